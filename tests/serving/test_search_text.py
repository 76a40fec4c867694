"""GET /search/text: items whose titles and tags match the words, filtered by tags, 422 on bad input."""


def test_words_find_the_items_that_carry_them(client, shop):
    items = shop.items()
    body = client.get("/search/text", params={"q": "red", "k": 100}).json()
    red = set(items.loc[items["colour"] == "red", "item_id"])
    assert body["query"] == "red" and body["k"] == 100
    assert {i["item_id"] for i in body["items"]} == red     # every red item, and only those
    assert all(i["reason"] == 'matches "red"' and i["image_url"] for i in body["items"])


def test_a_title_word_finds_its_item_first(client, shop):
    title = shop.items()["title"].iloc[7]
    found = client.get("/search/text", params={"q": title, "k": 3}).json()["items"]
    assert found[0]["title"] == title


def test_tag_filter_applies_to_text_search(client, shop):
    items = shop.items()
    pattern = items.loc[items["colour"] == "red", "pattern"].iloc[0]
    body = client.get("/search/text", params={"q": "red", "k": 10, "tags": pattern}).json()
    assert body["items"] and all(pattern in i["tags"] for i in body["items"])


def test_bad_queries_are_422(client):
    for params in ({}, {"q": ""}, {"q": "   "}, {"q": "x" * 201}, {"q": "red", "k": 0}, {"q": "red", "k": 101}):
        response = client.get("/search/text", params=params)
        assert response.status_code == 422, params
