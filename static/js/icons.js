// Player icons as SVG (no icon font, no emoji font needed).
const NS = "http://www.w3.org/2000/svg";
const PATHS = {
  play: [["fill", "M8 5v14l11-7z"]],
  pause: [["fill", "M6 5h4v14H6zM14 5h4v14h-4z"]],
  volume: [["fill", "M3 9v6h4l5 5V4L7 9H3z"], ["stroke", "M15.5 8.5a5 5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13"]],
  muted: [["fill", "M3 9v6h4l5 5V4L7 9H3z"], ["stroke", "M16 9l6 6M22 9l-6 6"]],
  fullscreen: [["stroke", "M4 9V4h5M15 4h5v5M20 15v5h-5M9 20H4v-5"]],
};

export function icon(name) {
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "ico");
  for (const [kind, d] of PATHS[name] || []) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("class", kind);
    svg.append(path);
  }
  return svg;
}

export function setIcon(button, name) {
  if (button.dataset.icon === name) return;
  button.dataset.icon = name;
  button.replaceChildren(icon(name));
}
