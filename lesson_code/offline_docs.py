"""/docs without internet: Swagger UI's files served by the app itself, under relative URLs, with no saved login."""

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

# Swagger UI's files come with the fastapi-swagger package; relative URLs never name the host the request named.
SWAGGER_FILES = StaticFiles(packages=[("fastapi_swagger", "resources")])
# persistAuthorization would keep the password and the token in the browser's localStorage.
SWAGGER_UI_PARAMETERS = {"persistAuthorization": False, "tryItOutEnabled": True, "displayRequestDuration": True}


def add_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from the app's own files; create the app with docs_url=None and redoc_url=None."""
    app.mount("/swagger", SWAGGER_FILES, name="swagger")

    @app.get("/", include_in_schema=False)
    async def redirect_to_docs() -> RedirectResponse:
        return RedirectResponse("docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui_html() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url="swagger/swagger-ui-bundle.js",
            swagger_css_url="swagger/swagger-ui.css",
            swagger_favicon_url="swagger/favicon-32x32.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
