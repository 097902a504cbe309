"""What the project knows of a model before loading it: its shape (`shape`), LoRA targets (`lora`) and
FLOPs per token (`flops`); and the tiny demo Llama it builds (`tiny`)."""
