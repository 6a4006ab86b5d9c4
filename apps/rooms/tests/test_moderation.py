"""Text leaving the server (docs/security.md, "Checks on what comes in"): HTML escaping of
& < > " ' and the sensitive-word filter (moderator-edited list: case-insensitive, same-length
masks, longest match first, words are literal text, edits picked up)."""

from __future__ import annotations

import html
import types

import pytest
from django.test import Client

from apps.accounts.models import Role, User
from apps.accounts.tests.factories import make_user
from apps.core.tests.helpers import admin_url
from apps.rooms import moderation
from apps.rooms.models import SensitiveWord
from apps.rooms.moderation import clean_text, escape, word_filter, words_changed

pytestmark = pytest.mark.usefixtures("fresh_word_filter")

WORDS = "/admin/rooms/sensitiveword/"


def set_words(*words: str) -> None:
    SensitiveWord.objects.all().delete()
    for w in words:
        SensitiveWord.objects.create(word=w)
    words_changed()


# --- escaping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("&", "&amp;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&quot;"),
        ("'", "&#x27;"),
        ("", ""),
        ("plain text 123", "plain text 123"),
        ("<script>alert('x')</script>", "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"),
        ('<img src=x onerror="alert(1)">', "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"),
        ("Tom & Jerry's", "Tom &amp; Jerry&#x27;s"),
        ("&&<<>>", "&amp;&amp;&lt;&lt;&gt;&gt;"),
        # Already escaped input is escaped again, consistently: & first, never skipped.
        ("&amp;", "&amp;amp;"),
        ("&lt;b&gt;", "&amp;lt;b&amp;gt;"),
        ("&#x27;", "&amp;#x27;"),
        ("&quot;x&quot;", "&amp;quot;x&amp;quot;"),
        ("&#60;", "&amp;#60;"),
        # Others untouched: unicode, backticks, slashes, newlines, NUL.
        ("héllo 名前 🎬", "héllo 名前 🎬"),
        ("`/\\=\n\t\x00", "`/\\=\n\t\x00"),
    ],
)
def test_escape_table(text, escaped):
    assert escape(text) == escaped


@pytest.mark.parametrize(
    "text",
    ["&", "<a href='x'>&amp;</a>", "&lt;", "plain", "''\"\"<<>>&&", "&#x27;&quot;", "a & b < c > d"],
)
def test_escape_is_consistent_and_reversible(text):
    once = escape(text)
    twice = escape(once)
    # No raw significant character survives, and escaping twice is escaping the escaped text.
    assert not any(
        c
        in once.replace("&amp;", "")
        .replace("&lt;", "")
        .replace("&gt;", "")
        .replace("&quot;", "")
        .replace("&#x27;", "")
        for c in "&<>\"'"
    )
    assert twice == escape(once)
    assert html.unescape(once) == text
    assert html.unescape(html.unescape(twice)) == text


def test_escape_matches_django_escape_for_the_five_characters():
    from django.utils.html import escape as django_escape

    sample = '<p class="a">Tom & Jerry\'s</p>'
    assert escape(sample) == str(django_escape(sample))


# --- the sensitive-word filter ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_words_no_change():
    set_words()
    assert word_filter.mask("anything <at> all") == "anything <at> all"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("darn", "****"),
        ("DARN", "****"),
        ("DaRn it", "**** it"),
        ("undarnable", "un****able"),
        ("darn darn", "**** ****"),
        ("dar n", "dar n"),
        ("Ärger und ärger", "***** und *****"),
        ("ÄRGER", "*****"),
    ],
)
def test_words_masked_case_insensitively_same_length(text, masked):
    set_words("darn", "ärger")
    assert word_filter.mask(text) == masked
    assert len(word_filter.mask(text)) == len(text)


@pytest.mark.django_db
def test_longest_match_first():
    set_words("bad", "badword", "word")
    assert word_filter.mask("badword") == "*******"
    assert word_filter.mask("bad word") == "*** ****"
    assert word_filter.mask("BADWORDS") == "*******S"
    # Order of creation does not matter.
    set_words("badword", "bad")
    assert word_filter.mask("badwordy") == "*******y"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("word", "hit", "miss"),
    [
        ("a.b", "x a.b y", "x axb y"),
        ("c++", "I like c++", "I like cc"),
        ("(x)", "f(x)", "x"),
        ("[abc]", "[abc]", "a b c"),
        ("\\d+", "\\d+", "123"),
        ("^start$", "^start$", "start"),
        ("a|b", "a|b", "a b"),
        ("a*b", "2 a*b 3", "2 aab 3"),
        ("?", "why?", "why"),
        ("{2}", "{2}", "22"),
        ("$HOME", "$HOME", "HOME"),
    ],
)
def test_regex_metacharacters_are_literal(word, hit, miss):
    set_words(word)
    assert word in hit
    masked = word_filter.mask(hit)
    assert masked == hit.replace(word, "*" * len(word))
    assert word_filter.mask(miss) == miss


@pytest.mark.django_db
def test_blank_and_padded_words():
    SensitiveWord.objects.create(word="   ")
    SensitiveWord.objects.create(word="  spoiler  ")
    words_changed()
    assert word_filter.mask("no spoiler here") == "no ******* here"
    assert word_filter.mask("   spaces   ") == "   spaces   "


@pytest.mark.django_db
def test_words_changed_is_picked_up():
    set_words("alpha")
    assert word_filter.mask("alpha beta") == "***** beta"
    SensitiveWord.objects.create(word="beta")
    words_changed()
    assert word_filter.mask("alpha beta") == "***** ****"
    SensitiveWord.objects.filter(word="alpha").delete()
    words_changed()
    assert word_filter.mask("alpha beta") == "alpha ****"


@pytest.mark.django_db
def test_other_nodes_reload_after_a_change(monkeypatch):
    """Another process (a fresh filter here) sees the change through the shared version within
    RELOAD_SECONDS, without anyone calling invalidate() on it."""
    now = [1000.0]
    monkeypatch.setattr(moderation, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    set_words("alpha")
    other = moderation._WordFilter()
    assert other.mask("alpha beta") == "***** beta"

    SensitiveWord.objects.create(word="beta")
    words_changed()  # bumps the shared version; only this process's filter is invalidated
    # Within the reload interval the other node may still use its copy...
    now[0] += 1
    assert other.mask("beta") == "beta"
    # ...after it, it has reloaded.
    now[0] += moderation.RELOAD_SECONDS + 0.1
    assert other.mask("alpha beta") == "***** ****"


# --- clean_text ------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("words", "text", "cleaned"),
    [
        ((), "<b>hi</b> & 'bye'", "&lt;b&gt;hi&lt;/b&gt; &amp; &#x27;bye&#x27;"),
        (("bad",), "<bad>", "&lt;***&gt;"),
        (("bad",), 'a BAD & "good"', "a *** &amp; &quot;good&quot;"),
        # Masked first, then escaped: a word with & or < still matches what the user typed...
        (("a&b",), "a&b", "***"),
        (("<3",), "I <3 you", "I ** you"),
        # ...and a word that looks like an escape sequence never breaks one.
        (("amp",), "fish & chips", "fish &amp; chips"),
        (("lt", "gt", "quot"), '<">', "&lt;&quot;&gt;"),
        (("x27",), "'", "&#x27;"),
    ],
)
def test_clean_text_masks_then_escapes(words, text, cleaned):
    set_words(*words)
    assert clean_text(text) == cleaned


# --- edited in the admin -------------------------------------------------------------------------------


@pytest.fixture
def moderator_client(db) -> Client:
    root, _ = make_user("root")
    User.objects.filter(pk=root.pk).update(role=Role.ROOT)
    root.refresh_from_db()
    c = Client(raise_request_exception=False)
    c.force_login(root)
    return c


def test_admin_add_edit_and_delete_are_picked_up(moderator_client):
    set_words()
    assert clean_text("what a spoiler") == "what a spoiler"

    r = moderator_client.post(
        f"{WORDS}add/",
        {"word": "spoiler", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"},
    )
    assert r.status_code == 302, r.content[:500]
    word = SensitiveWord.objects.get(word="spoiler")
    assert clean_text("what a SPOILER") == "what a *******"

    r = moderator_client.post(
        admin_url(word),
        {"word": "plot twist", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"},
    )
    assert r.status_code == 302, r.content[:500]
    assert clean_text("a spoiler: plot twist") == "a spoiler: **********"

    r = moderator_client.post(admin_url(word, "delete"), {"post": "yes"})
    assert r.status_code == 302, r.content[:500]
    assert not SensitiveWord.objects.exists()
    assert clean_text("a plot twist") == "a plot twist"


def test_admin_bulk_delete_is_picked_up(moderator_client):
    set_words("one", "two", "three")
    assert clean_text("one two three four") == "*** *** ***** four"
    ids = list(SensitiveWord.objects.filter(word__in=["one", "two"]).values_list("pk", flat=True))
    r = moderator_client.post(WORDS, {"action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert r.status_code == 302, r.content[:500]
    assert list(SensitiveWord.objects.values_list("word", flat=True)) == ["three"]
    assert clean_text("one two three four") == "one two ***** four"


def test_admin_refuses_duplicate_words(moderator_client):
    set_words("spoiler")
    r = moderator_client.post(
        f"{WORDS}add/", {"word": "spoiler", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"}
    )
    assert r.status_code == 200  # the form again, with the error
    assert SensitiveWord.objects.count() == 1
