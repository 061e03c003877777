"""`twostream bench` sub-reports: one module per report (stages, engine vs eager, throughput, capacity,
baselines, flow quality), sharing the measurement/ratio bookkeeping in stream.bench.common.

No torch at module level anywhere here: the eager and baseline parts import it inside functions
and are skipped, with a note, when torch is not installed.
"""
