"""The interactive API docs: Swagger UI from drf-spectacular-sidecar, served by us (no CDN).

The split view loads its start-up code from a URL of its own instead of an inline script, so
the site's Content-Security-Policy holds; this page alone also allows data: images (Swagger
UI's icons) and inline styles (its style attributes).
"""
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView

from smtpeter_site.csp import HEADER, policy

DOCS_POLICY = policy(img_src="'self' data:", style_src="'self' 'unsafe-inline'")


class SwaggerView(SpectacularSwaggerSplitView):
    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response[HEADER] = DOCS_POLICY
        return response
