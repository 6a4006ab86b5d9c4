from django.urls import path

from apps.accounts import api, api_email
from apps.accounts.oauth import views as oauth_views

urlpatterns = [
    path("auth/register", api.RegisterView.as_view(), name="auth-register"),
    path("auth/login", api.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", api.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", api.LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all", api.LogoutAllView.as_view(), name="auth-logout-all"),
    path("auth/password/change", api.PasswordChangeView.as_view(), name="auth-password-change"),
    path("auth/email/verify", api_email.EmailVerifyView.as_view(), name="auth-email-verify"),
    path("auth/email/resend", api_email.EmailResendView.as_view(), name="auth-email-resend"),
    path("auth/password/reset", api_email.PasswordResetView.as_view(), name="auth-password-reset"),
    path(
        "auth/password/reset/confirm",
        api_email.PasswordResetConfirmView.as_view(),
        name="auth-password-reset-confirm",
    ),
    path("auth/jwks", api.JWKSView.as_view(), name="auth-jwks"),
    path("users/me", api.MeView.as_view(), name="users-me"),
    path("auth/providers", oauth_views.ProvidersView.as_view(), name="auth-providers"),
    path("auth/oauth/<str:provider>/start", oauth_views.OAuthStartView.as_view(), name="auth-oauth-start"),
    path(
        "auth/oauth/<str:provider>/callback",
        oauth_views.OAuthCallbackView.as_view(),
        name="auth-oauth-callback",
    ),
    path("users/me/identities", oauth_views.IdentitiesView.as_view(), name="users-me-identities"),
    path(
        "users/me/identities/<str:provider>",
        oauth_views.IdentityView.as_view(),
        name="users-me-identity",
    ),
]
