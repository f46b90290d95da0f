"""The one Logger, Tracer and Metrics of every function.

Service name, namespace, log level and sampling come from the POWERTOOLS_* environment the
template sets in Globals, so these objects need no arguments.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
# Patch only the AWS SDK: auto-patching every library X-Ray knows costs init time for clients we
# either do not use or trace ourselves.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
