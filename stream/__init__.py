"""twostream runtime: capture, flow ring, inference and ZeroMQ publishing."""
