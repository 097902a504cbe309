"""Instruction and chat data: readers, prompt templates, loss masks, packing, cache."""
