"""The batch engine: reader -> decode -> infer -> postprocess -> writer, wired in ``run``."""
