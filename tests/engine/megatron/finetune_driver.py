"""Run the megatron engine once, as `python -m primus_bridge.train` does, and write its TrainResult as JSON.

Used by the GPU tests under torchrun: `torchrun --nproc-per-node 1 finetune_driver.py --result R.json ...`.
"""

import json
import os
import sys


def main() -> int:
    from primus_bridge.config import load_config
    from primus_bridge.engine import get_engine
    from primus_bridge.logs import setup_logging
    from primus_bridge.run.report import result_to_json
    from primus_bridge.train import build_parser

    parser = build_parser()
    parser.add_argument("--result", required=True, help="where rank 0 writes the TrainResult JSON")
    args = parser.parse_args()
    setup_logging()
    result = get_engine("megatron").train(load_config(args))
    if int(os.environ.get("RANK", "0")) == 0:
        with open(args.result, "w", encoding="utf-8") as handle:
            json.dump(result_to_json(result), handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
