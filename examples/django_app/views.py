"""A deepcat model inside a Django project: one view that answers the same JSON as `deepcat serve`'s
`POST /v1/predict`, from the exported ONNX model alone (ONNX Runtime; torch is not imported).

In your project: set `DEEPCAT_MODEL = "path/to/model.onnx"` in settings.py and route to the view:

    # urls.py
    from django.urls import path
    from examples.django_app.views import predict
    urlpatterns = [path("v1/predict", predict)]

`examples/django_app/settings.py` and `urls.py` are a minimal project that does exactly this.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from deepcat.inference.exported import ExportedClassifier, load_exported
from deepcat.inputs import BadInput


@cache
def model() -> ExportedClassifier:
    return load_exported(settings.DEEPCAT_MODEL)  # once, on the first request


@csrf_exempt  # an API for programs, not a form; add your own authentication as for any other view
@require_POST
def predict(request: HttpRequest) -> JsonResponse:
    upload = request.FILES.get("file")
    data = upload.read() if upload else request.body
    try:
        return JsonResponse(model().answer(data, name=upload.name if upload else "body",
                                           top_k=int(request.GET.get("top_k", 5))))
    except BadInput as e:  # not an image, truncated, too many pixels: the client's error
        return JsonResponse({"error": e.reason, "detail": str(e)}, status=e.status)
