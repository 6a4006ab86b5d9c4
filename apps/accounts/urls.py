from django.urls import path

from apps.accounts import api

urlpatterns = [
    path("auth/register", api.RegisterView.as_view(), name="auth-register"),
    path("auth/login", api.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", api.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", api.LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all", api.LogoutAllView.as_view(), name="auth-logout-all"),
    path("auth/password/change", api.PasswordChangeView.as_view(), name="auth-password-change"),
    path("auth/jwks", api.JWKSView.as_view(), name="auth-jwks"),
    path("users/me", api.MeView.as_view(), name="users-me"),
]
