// The gallery: plain DOM, no build step. Everything it shows comes from the JSON API.
"use strict";

const view = { user: null, item: null, tag: "", lastUpload: null };
const $ = (id) => document.getElementById(id);

function tagQuery() {
  return view.tag ? "&tags=" + encodeURIComponent(view.tag) : "";
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail
      : Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function say(text, isError) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
  box.classList.toggle("error", Boolean(isError));
}

function card(item, options = {}) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.itemId = item.item_id;
  const img = document.createElement("img");
  img.alt = item.title;
  img.loading = "lazy";
  if (item.image_url) img.src = item.image_url + "?size=" + (options.small ? 96 : 256);
  div.appendChild(img);
  if (!options.small) {
    if (item.score !== undefined) {
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = Number(item.score).toFixed(2);
      div.appendChild(score);
    }
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = item.title;
    div.appendChild(title);
    const tags = document.createElement("div");
    tags.className = "tags";
    for (const tag of item.tags || []) {
      const chip = document.createElement("span");
      chip.className = "tag" + (tag === view.tag ? " active" : "");
      chip.textContent = tag;
      chip.dataset.tag = tag;
      chip.addEventListener("click", (event) => { event.stopPropagation(); setTag(tag === view.tag ? "" : tag); });
      tags.appendChild(chip);
    }
    div.appendChild(tags);
    if (item.reason) {
      const reason = document.createElement("div");
      reason.className = "reason";
      reason.textContent = item.reason;
      div.appendChild(reason);
    }
  } else {
    div.title = item.title;
  }
  div.addEventListener("click", () => showSimilar(item.item_id, item.title));
  return div;
}

function fill(containerId, items, options) {
  const container = $(containerId);
  container.replaceChildren(...items.map((item) => card(item, options)));
  if (!items.length) container.textContent = "nothing matches" + (view.tag ? ` the tag “${view.tag}”` : "");
}

async function showUser(userId) {
  if (!userId) return;
  view.user = userId;
  say("");
  try {
    const [history, recs] = await Promise.all([
      getJson(`/users/${encodeURIComponent(userId)}/history?limit=30`),
      getJson(`/recommendations/${encodeURIComponent(userId)}?k=12${tagQuery()}`),
    ]);
    $("history-user").textContent = userId;
    $("history-total").textContent = history.total ? `(${history.total} items)` : "(no history: a new visitor)";
    fill("history", history.items, { small: true });
    $("history-section").hidden = false;
    $("recs-note").textContent = recs.cold_start
      ? "— new visitor: popular picks across categories"
      : `— ${recs.ranker} ranker, champion v${recs.champion_version}`;
    fill("recommendations", recs.items);
    $("recs-section").hidden = false;
  } catch (error) {
    say(error.message, true);
  }
}

async function showSimilar(itemId, title) {
  view.item = { id: itemId, title };
  try {
    const result = await getJson(`/items/${encodeURIComponent(itemId)}/similar?k=12${tagQuery()}`);
    $("similar-title").textContent = result.item.title;
    fill("similar", result.items);
    $("similar-section").hidden = false;
    $("similar-section").scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (error) {
    say(error.message, true);
  }
}

async function searchUpload(file) {
  if (!file) return;
  view.lastUpload = file;
  const form = new FormData();
  form.append("file", file);
  try {
    const result = await getJson(`/search/image?k=12${tagQuery()}`, { method: "POST", body: form });
    say("");
    fill("search-results", result.items);
    $("search-section").hidden = false;
  } catch (error) {
    say("Picture not searched: " + error.message, true);
  }
}

async function searchText(query) {
  if (!query) return;
  view.lastText = query;
  try {
    const result = await getJson(`/search/text?q=${encodeURIComponent(query)}&k=12${tagQuery()}`);
    say("");
    $("text-query").textContent = result.query;
    fill("text-results", result.items);
    $("text-section").hidden = false;
    $("text-section").scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (error) {
    say("Words not searched: " + error.message, true);
  }
}

function setTag(tag) {
  view.tag = tag;
  $("tag-select").value = tag;
  if (view.user) showUser(view.user);
  if (view.item) showSimilar(view.item.id, view.item.title);
  if (view.lastUpload) searchUpload(view.lastUpload);
  if (view.lastText) searchText(view.lastText);
}

async function start() {
  try {
    const status = await getJson("/status");
    $("status").textContent = status.ready
      ? `dataset ${status.dataset} · champion v${status.champion.version} (${status.champion.ranker}) · ` +
        `${status.index.items} items indexed`
      : `dataset ${status.dataset} · not ready yet`;
    const [users, tags] = await Promise.all([getJson("/users?limit=200"), getJson("/tags")]);
    for (const user of users.users) {
      const option = new Option(`${user.user_id} (${user.history})`, user.user_id);
      $("user-select").add(option);
    }
    for (const tag of tags.tags) $("tag-select").add(new Option(`${tag.tag} (${tag.items})`, tag.tag));
    // open on something real: the shopper with the longest history (the list comes sorted so)
    if (users.users.length && !view.user) {
      $("user-select").value = users.users[0].user_id;
      showUser(users.users[0].user_id);
    }
  } catch (error) {
    say("The server is not ready: " + error.message, true);
  }
}

$("user-select").addEventListener("change", (event) => showUser(event.target.value));
$("user-go").addEventListener("click", () => showUser($("user-input").value.trim()));
$("user-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter") showUser(event.target.value.trim());
});
$("tag-select").addEventListener("change", (event) => setTag(event.target.value));
$("upload-input").addEventListener("change", (event) => searchUpload(event.target.files[0]));
$("text-go").addEventListener("click", () => searchText($("text-input").value.trim()));
$("text-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter") searchText(event.target.value.trim());
});
start();
