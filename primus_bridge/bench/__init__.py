"""`primus-bridge bench`: run a benchmark suite on identical batches for each system and write reports.

Layout: `suites` (what to run, as data), `shapes` (model shapes), `peak` (matmul ceilings; model FLOPs per
token are `primus_bridge.models.flops`), `environment`, `workspace` (model, data and config per case), `worker`
(one system in a fresh process), `runner` (the suite loop), `metrics` and `targets` (numbers from
raw runs), `report/` (JSON, CSV, Markdown, plots, index), `cli`.
"""
