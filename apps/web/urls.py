from django.urls import path

from apps.web import views

urlpatterns = [
    path("", views.home, name="web-home"),
    path("login/", views.login, name="web-login"),
    path("signup/", views.signup, name="web-signup"),
    # The e-mail pages; the links in the mails point at the last two (docs/api.md).
    path("forgot-password/", views.forgot_password, name="web-forgot-password"),
    path("reset-password/", views.reset_password, name="web-reset-password"),
    path("verify-email/", views.verify_email, name="web-verify-email"),
    # Where providers send the browser back: the redirect_uri of auth/oauth/{provider}/start.
    path("oauth/callback/<str:provider>/", views.oauth_callback, name="web-oauth-callback"),
    # The earlier address of the same page, for redirect URIs registered with it.
    path("oauth/<str:provider>/callback/", views.oauth_callback, name="web-oauth-callback-old"),
    path("rooms/<str:room_id>/", views.room, name="web-room"),
]
