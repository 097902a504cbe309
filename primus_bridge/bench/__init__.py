"""`primus-bridge bench`: run a benchmark suite on identical batches for each system and write reports.

Layout: `suites` (what to run, as data), `shapes` (model shapes), `flops` (model FLOPs per token),
`peak` (matmul ceilings), `environment`, `workspace` (model, data and config per case), `worker`
(one system in a fresh process), `runner` (the suite loop), `metrics` and `targets` (numbers from
raw runs), `report/` (JSON, CSV, Markdown, plots, index), `cli`.
"""
