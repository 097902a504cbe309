"""Reading numbers out of command-line text."""


def is_number(text: str) -> bool:
    """Whether `text` reads as a number (`0.7`, `-1e-4`, `5000`), as float() reads it."""
    try:
        float(text)
    except ValueError:
        return False
    return True
