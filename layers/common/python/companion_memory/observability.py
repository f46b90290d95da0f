"""The one Logger, Tracer and Metrics of every function.

Service name, namespace, log level and sampling come from the POWERTOOLS_* environment the
template sets in Globals, so these objects need no arguments.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
