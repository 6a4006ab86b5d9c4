from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from floor.models import User


class MeSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class MeView(APIView):
    def get(self, request):
        return Response(MeSerializer(request.user).data)


urlpatterns = [path("api/v1/users/me", MeView.as_view())]
