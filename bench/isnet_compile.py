"""IS-Net model-only forward on CPU at 1024x1024, fp32: eager (as bgcut runs it) vs torch.compile.

Both sides: batch norm folded, channels_last, 2 threads, inference mode / no_grad; best and
mean of 3 timed forwards after one warm-up. torch.compile uses inductor with freezing and
weight prepacking (the CPU settings that fuse conv + activation and prepack oneDNN weights).

    python bench/isnet_compile.py eager
    python bench/isnet_compile.py compile
"""

from __future__ import annotations

import sys
import time

import torch

from bgcut.models import create_model
from bgcut.models._fuse import fuse_conv_bn


def main() -> None:
    torch.set_num_threads(2)
    model = fuse_conv_bn(create_model("isnet-general", None, device="cpu").module.eval())
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 1024, 1024).to(memory_format=torch.channels_last)
    if sys.argv[1:] == ["compile"]:
        import torch._inductor.config as inductor

        inductor.freezing = True
        inductor.cpp.weight_prepack = True
        t = time.perf_counter()
        model = torch.compile(model)
        with torch.no_grad():
            model(x)
        print(f"compile + first forward: {time.perf_counter() - t:.1f} s")
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    print(f"{sys.argv[1]}: best {min(times):.3f} s, mean {sum(times) / len(times):.3f} s per forward")


if __name__ == "__main__":
    main()
