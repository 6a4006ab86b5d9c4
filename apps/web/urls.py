from django.urls import path

from apps.web import views

urlpatterns = [
    path("", views.home, name="web-home"),
    path("login/", views.login, name="web-login"),
    path("signup/", views.signup, name="web-signup"),
    path("oauth/<str:provider>/callback/", views.oauth_callback, name="web-oauth-callback"),
    path("rooms/<str:room_id>/", views.room, name="web-room"),
]
