"""`primus-bridge chat`: talk to a trained model with exactly the prompt format it was trained with.

- trained_template.py: the template (and its date) a checkpoint or export records;
- prompt.py: a conversation -> the prompt token ids training used for it, and the stop tokens;
- inputs.py: --prompt / --input JSONL records -> conversations (file:line errors);
- model_source.py: --model (HF export, PEFT adapter, checkpoint) -> the folders to load;
- backends.py: generation with Transformers or vLLM;
- cli.py: the verb (interactive on a terminal, batch JSONL otherwise).
"""
