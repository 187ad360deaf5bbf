"""Speed and memory benchmarks of uae, side by side with peer tokenizers (``uae bench``).

Modules: :mod:`~uae.bench.run` (``BenchSettings``, ``run_benchmark(**settings)``, ``describe_run``: the
run, each subject in its own process), :mod:`~uae.bench.plan` (what a run will do, its estimated time and
memory), :mod:`~uae.bench.worker` (one subject in a fresh process), :mod:`~uae.bench.subjects`
(measuring uae, a peer or a training step), :mod:`~uae.bench.timing` (timing, memory, FLOPs),
:mod:`~uae.bench.peers` (the peer tokenizers), :mod:`~uae.bench.train_step` (training steps),
:mod:`~uae.bench.report` (targets, markdown), :mod:`~uae.bench.startup` (start-up latency); command-line
options in :mod:`uae.commands.bench`.
"""
