"""Models: classical baselines (classical.py), sequence networks (networks.py) with discrete-time hazard
heads (hazard.py, targets.py), their Lightning training (lightning_module.py) and torch data (data.py).

Nothing here is imported by the ingest or dataset commands; torch is imported only by the sequence modules.
"""
