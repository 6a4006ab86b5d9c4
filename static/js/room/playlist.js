// The playlist panel: the list (play this one, ↑/↓, drag to reorder, remove) and the "add a
// video" form. The list itself is `S.movies`, written only here: from the API after a `playlist`
// event, `hello` or our own change.
import { api, ApiError } from "../api.js";
import { $, h, toast } from "../common.js";
import { PERM } from "../perms.js";
import { movieKind } from "../player.js";
import { sendPlayback, syncMovie } from "./playback.js";
import { can, myId, roomId, S } from "./store.js";

// While someone drags an item, changes to the list (theirs or another member's) wait for the
// drop: replacing the nodes under the pointer would end or misplace the drag.
let dragId = null;
let playlistStale = false;

function endDrag() {
  dragId = null;
  if (playlistStale) {
    playlistStale = false;
    renderPlaylist();
  }
}

export function renderPlaylist() {
  const list = $("[data-testid=playlist]");
  if (!list) return;
  if (dragId) {
    playlistStale = true;
    return;
  }
  const current = S.playback ? S.playback.movie_id : null;
  const canPick = can(PERM.PLAY_CONTROL, PERM.CHANGE_CURRENT_MOVIE);
  const canReorder = can(PERM.REORDER_PLAYLIST);
  list.replaceChildren(...S.movies.map((movie, index) => {
    const mine = movie.added_by && movie.added_by.id === myId();
    const actions = h("span", { class: "actions" },
      canPick ? h("button", {
        type: "button", class: "secondary small", "data-testid": "play-this",
        "aria-label": `Play ${movie.name}`, onclick: () => sendPlayback({ movie_id: movie.id, playing: true }),
      }, "Play") : null,
      canReorder ? h("button", {
        type: "button", class: "icon small", "aria-label": `Move ${movie.name} up`, disabled: index === 0,
        onclick: () => moveMovie(movie.id, index - 1),
      }, "↑") : null,
      canReorder ? h("button", {
        type: "button", class: "icon small", "aria-label": `Move ${movie.name} down`, disabled: index === S.movies.length - 1,
        onclick: () => moveMovie(movie.id, index + 1),
      }, "↓") : null,
      can(PERM.DELETE_MOVIE) || mine ? h("button", {
        type: "button", class: "icon small danger", "data-remove": "", "aria-label": `Remove ${movie.name}`,
        onclick: () => removeMovie(movie),
      }, "✕") : null);
    const item = h("li", {
      class: `playlist-item${movie.id === current ? " current" : ""}`,
      "data-testid": "playlist-item", dataset: { movieId: movie.id },
      "aria-current": movie.id === current ? "true" : null,
      draggable: canReorder ? "true" : null,
    },
    h("span", { class: "movie" },
      h("span", { class: "movie-name" }, movie.id === current ? "▶ " : "", movie.name),
      h("span", { class: "badge" }, movieKind(movie) === "file" ? "file" : movie.type === "live" ? "live" : "HLS"),
      movie.added_by ? h("span", { class: "muted small" }, ` · ${movie.added_by.username}`) : null),
    actions);
    if (canReorder) {
      item.addEventListener("dragstart", (event) => {
        dragId = movie.id;
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", movie.id);
        item.classList.add("dragging");
      });
      item.addEventListener("dragend", () => { item.classList.remove("dragging"); endDrag(); });
      item.addEventListener("dragover", (event) => { if (dragId) { event.preventDefault(); item.classList.add("drop-target"); } });
      item.addEventListener("dragleave", () => item.classList.remove("drop-target"));
      item.addEventListener("drop", (event) => {
        event.preventDefault();
        item.classList.remove("drop-target");
        const dragged = dragId;
        if (!dragged || dragged === movie.id) return;
        const rect = item.getBoundingClientRect();
        const after = event.clientY > rect.top + rect.height / 2;
        // Positions from the list as it is now: it may have changed during the drag.
        const from = S.movies.findIndex((m) => m.id === dragged);
        const target = S.movies.findIndex((m) => m.id === movie.id);
        endDrag();
        if (from < 0 || target < 0) return;
        let to = target + (after ? 1 : 0);
        if (from < to) to -= 1;
        moveMovie(dragged, to);
      });
    }
    return item;
  }));
  const empty = $("[data-playlist-empty]");
  if (empty) empty.hidden = S.movies.length > 0;
}

async function moveMovie(movieId, to) {
  const from = S.movies.findIndex((m) => m.id === movieId);
  if (from < 0 || to < 0 || to >= S.movies.length || from === to) return;
  const order = S.movies.slice();
  const [moved] = order.splice(from, 1);
  order.splice(to, 0, moved);
  S.movies = order;
  renderPlaylist();
  try {
    const result = await api("POST", `rooms/${roomId}/movies/reorder`, { body: { order: order.map((m) => m.id) }, roomId });
    S.movies = result.results;
    renderPlaylist();
  } catch (err) {
    toast(err.message, { kind: "error" });
    loadMovies();
  }
}

async function removeMovie(movie) {
  try {
    await api("DELETE", `rooms/${roomId}/movies/${encodeURIComponent(movie.id)}`, { roomId });
    S.movies = S.movies.filter((m) => m.id !== movie.id);
    renderPlaylist();
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
}

// One fetch at a time: a `playlist` event during a fetch asks for one more after it.
let moviesLoading = null;
export async function loadMovies() {
  if (moviesLoading) { moviesLoading.again = true; return; }
  moviesLoading = { again: false };
  try {
    const data = await api("GET", `rooms/${roomId}/movies`, { roomId });
    S.movies = data.results;
    renderPlaylist();
    syncMovie();
  } catch (err) {
    if (err.status !== 403) toast(`Could not load the playlist: ${err.message}`, { kind: "error" });
  } finally {
    const again = moviesLoading.again;
    moviesLoading = null;
    if (again) loadMovies();
  }
}

// The playlist's controls mounted per permission (perms.js applyParts; room.js merges the parts).
export const playlistParts = {
  "add-movie": (form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const url = $("[data-testid=add-movie-url]", form).value.trim();
      let name = $("[data-testid=add-movie-name]", form).value.trim();
      let type = $("[data-add-movie-type]", form).value;
      if (!url) return;
      if (!name) {
        try { name = decodeURIComponent(new URL(url).pathname.split("/").filter(Boolean).pop() || "") || url; } catch { name = url; }
        name = name.slice(0, 200);
      }
      if (!type) type = movieKind({ url }) === "hls" ? "hls" : "file";
      const button = $("[data-testid=add-movie-submit]", form);
      button.disabled = true;
      try {
        const movie = await api("POST", `rooms/${roomId}/movies`, { body: { url, name, type }, roomId });
        if (!S.movies.some((m) => m.id === movie.id)) S.movies.push(movie);
        renderPlaylist();
        form.reset();
      } catch (err) {
        toast(err instanceof ApiError ? err.describe() : err.message, { kind: "error" });
      } finally {
        button.disabled = false;
      }
    });
  },
};
