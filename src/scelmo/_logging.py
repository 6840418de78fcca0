"""The package logger; scanpy-style messages about what a function added."""

import logging

logger = logging.getLogger("scelmo")
