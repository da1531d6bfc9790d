"""The one error type users see: which input is wrong, what was expected, how to fix it.

ComfyUI shows an exception's message in the UI; raising this (never a bare assert or a tensor shape
error from deep inside torch) keeps that message readable.
"""


class InputError(ValueError):
    def __init__(self, input_name: str, problem: str, fix: str = ""):
        self.input_name = input_name
        message = f"Input '{input_name}': {problem}"
        super().__init__(f"{message} {fix}".strip() if fix else message)
