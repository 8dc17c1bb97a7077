"""CPU tuning, not a pipeline stage: how many threads the model gets beside the decode and
write work (``cores``), and keeping freed feature maps in the process heap while a model runs
(``heap``). Both are no-ops on an accelerator."""
