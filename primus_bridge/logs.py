"""One logging setup for every entry point: plain lines with rank and time."""

import logging
import os
import sys


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger("primus_bridge")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        rank = os.environ.get("RANK")
        tag = f"[rank {rank}] " if rank not in (None, "0") else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s {tag}%(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return logger
