"""Public import path of the client (`from stream.client import Subscriber`); it lives in stream.clients.client."""
from stream.clients.client import (  # noqa: F401
    Change,
    EndOfStream,
    LabelScore,
    MessageError,
    Prediction,
    Status,
    Subscriber,
    decode_message,
)
