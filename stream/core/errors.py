"""One error type for problems the user can fix; the CLI prints it as one line, never a traceback."""

# The one message every GPU-only command prints when the GPU stack is missing (engines and the CUDA flow).
GPU_NEEDED = "needs an NVIDIA GPU with driver and `pip install twostream[gpu]`"


class TwostreamError(Exception):
    """A user-facing error: the message names the culprit (file, setting, URL) and what is wrong."""


class ConfigError(TwostreamError):
    """A bad setting in config.toml or on the command line."""


class BundleError(TwostreamError):
    """A model bundle that is missing, malformed or inconsistent."""


class SourceError(TwostreamError):
    """A source (file, URL, webcam) that cannot be used."""
