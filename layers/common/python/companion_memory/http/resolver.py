"""The Powertools resolver every REST function uses, with the one error→response mapping.

It is also where a request the Lambda authorizer found unauthenticated is answered 401 (with
``WWW-Authenticate``), before validation or any route code runs: see auth/context.py for why the
authorizer admits such requests at all.
"""

from collections.abc import Callable
from http import HTTPStatus

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from companion_memory.auth.context import rejected_by_authorizer, rejection
from companion_memory.errors import INTERNAL_ERROR_BODY, CompanionMemoryError, ValidationFailed
from companion_memory.observability import logger

# RFC 6750 §3: a 401 names the scheme and realm the client should authenticate with.
WWW_AUTHENTICATE = 'Bearer realm="companion-memory"'


def json_response[T](status: int, body: T, headers: dict[str, str] | None = None) -> Response[T]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def error_response(error: CompanionMemoryError) -> Response[object]:
    logger.info("request failed", extra={"error_code": error.code, "status": error.status})
    headers = error.headers()
    if error.status == HTTPStatus.UNAUTHORIZED:
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE, **headers}
    return json_response(error.status, error.to_body(), headers)


def _unauthenticated(app: APIGatewayHttpResolver) -> Response[object]:
    # 401, or 403 with the reason when the credential is good but its companion is paused or archived.
    return error_response(rejection(app.current_event.raw_event))


def _refuse_unauthenticated(
    app: APIGatewayHttpResolver, next_middleware: Callable[[APIGatewayHttpResolver], Response[object]]
) -> Response[object]:
    if rejected_by_authorizer(app.current_event.raw_event):
        return _unauthenticated(app)
    return next_middleware(app)


def build_resolver() -> APIGatewayHttpResolver:
    # enable_validation: request/response models are checked and the OpenAPI document is generated
    # from the same route declarations.
    app = APIGatewayHttpResolver(enable_validation=True)
    # Global middleware: runs before every route's code. Powertools runs request validation before it, so
    # the validation error handler below makes the same check (an invalid body must not turn 401 into 400).
    app.use(middlewares=[_refuse_unauthenticated])

    @app.exception_handler(CompanionMemoryError)
    def _domain_error(error: CompanionMemoryError) -> Response[object]:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response[object]:
        if rejected_by_authorizer(app.current_event.raw_event):
            return _unauthenticated(app)
        problems = [
            {"location": ".".join(str(p) for p in item.get("loc", ())), "problem": item.get("msg", "")}
            for item in error.errors()
        ]
        return error_response(ValidationFailed("The request is not valid", details={"problems": problems}))

    @app.not_found
    def _no_route(_: NotFoundError) -> Response[object]:
        return json_response(
            HTTPStatus.NOT_FOUND,
            {"error": {"code": "route_not_found", "message": "No such route", "retryable": False}},
        )

    @app.exception_handler(Exception)
    def _unexpected(_: Exception) -> Response[object]:
        # The trace goes to the log (with the request id), never to the caller.
        logger.exception("unhandled error")
        return json_response(HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR_BODY)

    return app
