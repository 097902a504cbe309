"""Size classes: the tuning tables models of one size share (keys: GPU memory tier in GB).

80 = H100, 141 = H200, 180 = B200, 192 = MI300X, 256 = MI325X, 288 = MI355X; a GPU uses the row
with the largest key not above its memory. Sequence 4096, micro batch 1, sequence parallel
whenever TP > 1; the recipe tests check every model of a class fits with at least 10% headroom.
"""

from ._base import LORA_LARGE, SFT_LARGE, SizeClass, Tuning

# 1B-3B: data parallel only, one node.
SMALL = SizeClass(sft={80: Tuning()}, lora={80: Tuning()})

# 7B-8B: SFT needs TP2 on 80 GB; LoRA is data parallel only.
B8 = SizeClass(sft={80: Tuning(tp=2), 141: Tuning()}, lora={80: Tuning()})

# 14B: SFT TP4 / TP2 / TP1 as memory grows; LoRA TP2 on 80 GB.
B14 = SizeClass(sft={80: Tuning(tp=4), 141: Tuning(tp=2), 180: Tuning()}, lora={80: Tuning(tp=2), 141: Tuning()})

# 32B: SFT TP8 on two H100 nodes, TP4 on 141-192 GB, TP2 from 256 GB (the guidance's 30-40B row).
B32 = SizeClass(
    sft={80: Tuning(tp=8, nodes=2), 141: Tuning(tp=4), 256: Tuning(tp=2)},
    lora={80: Tuning(tp=4), 141: Tuning(tp=2), 256: Tuning()},
    sft_defaults=SFT_LARGE, lora_defaults=LORA_LARGE,
)

# 70B-72B: SFT TP4 PP2 (the guidance's 70B+ row) on 4 / 2 / 1 nodes as memory grows; H100 TP8 PP4.
B70 = SizeClass(
    sft={80: Tuning(tp=8, pp=4, nodes=4), 141: Tuning(tp=4, pp=2, nodes=4), 180: Tuning(tp=4, pp=2, nodes=2),
         256: Tuning(tp=4, pp=2)},
    lora={80: Tuning(tp=8), 141: Tuning(tp=4), 180: Tuning(tp=2)},
    sft_defaults=SFT_LARGE, lora_defaults=LORA_LARGE,
)
