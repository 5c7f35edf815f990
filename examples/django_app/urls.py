from django.urls import path

from examples.django_app.views import predict

urlpatterns = [path("v1/predict", predict)]
