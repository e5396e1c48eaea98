"""Metron: benchmark LLM serving systems by what users feel.

Modules a simulator or any other caller can use without networking:
`metron.workload` (requests), `metron.metrics` (per-request records), `metron.summary`
(aggregates), `metron.slo` (SLO checks), `metron.run_format` (the shared run directory).
"""
