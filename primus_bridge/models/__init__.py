"""Model builders the project ships (the tiny demo Llama)."""
