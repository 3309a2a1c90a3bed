#!/usr/bin/python3
"""es_client.py: an independent Elasticsearch bulk client for tests (urllib only, nothing of
runnel's), the other side of the check on bin/es-dev.

  es_client.py bulk URL INDEX COUNT [--create]
      index (or create) COUNT generated rating documents with ids r1..rCOUNT in one _bulk request;
      prints a JSON summary: items per status, whether the items came back in request order with
      the ids sent, the versions, and the rating histogram of what was sent
  es_client.py check URL INDEX COUNT
      compares _count and a terms aggregation on rating with the documents bulk sends
Exit 1 when the server answers something a bulk client cannot read.
"""
import collections
import json
import sys
import urllib.request


def documents(count):
    for i in range(1, count + 1):
        yield f"r{i}", {"review_id": i, "product_id": f"B{i % 13:03d}", "rating": 1 + (i * 7) % 5,
                        "summary": f"review number {i}"}


def call(url, path, body, content_type="application/json"):
    request = urllib.request.Request(url + path, data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as answer:
        if answer.headers.get("X-elastic-product") != "Elasticsearch":
            raise SystemExit("the answer lacks X-elastic-product: Elasticsearch")
        return json.load(answer)


def bulk(url, index, count, action):
    lines = []
    for doc_id, document in documents(count):
        lines.append(json.dumps({action: {"_index": index, "_id": doc_id}}))
        lines.append(json.dumps(document))
    answer = call(url, "/_bulk", ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    items = answer["items"]
    statuses = collections.Counter()
    versions = collections.Counter()
    in_order = len(items) == count
    for (doc_id, _), item in zip(documents(count), items):
        (name, body), = item.items()
        in_order = in_order and name == action and body["_id"] == doc_id and body["_index"] == index
        statuses[str(body["status"])] += 1
        if "_version" in body:
            versions[str(body["_version"])] += 1
    histogram = collections.Counter(str(d["rating"]) for _, d in documents(count))
    print(json.dumps({"errors": answer["errors"], "statuses": statuses, "in_order": in_order,
                      "versions": versions, "ratings": histogram}, sort_keys=True))


def check(url, index, count):
    counted = call(url, f"/{index}/_count", b"{}")["count"]
    answer = call(url, f"/{index}/_search", json.dumps(
        {"size": 0, "aggs": {"ratings": {"terms": {"field": "rating", "size": 10}}}}).encode())
    buckets = {str(b["key"]): b["doc_count"] for b in answer["aggregations"]["ratings"]["buckets"]}
    histogram = dict(collections.Counter(str(d["rating"]) for _, d in documents(count)))
    print(json.dumps({"count": counted, "buckets_match": buckets == histogram,
                      "total": answer["hits"]["total"]}, sort_keys=True))


def main(argv):
    if len(argv) >= 5 and argv[1] == "bulk":
        bulk(argv[2], argv[3], int(argv[4]), "create" if "--create" in argv[5:] else "index")
    elif len(argv) == 5 and argv[1] == "check":
        check(argv[2], argv[3], int(argv[4]))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
