"""The model-graded check (issue 9, deep tier): a sampled share of app responses is graded by
a judge model served through our own router, like any request; its verdict is joined back to
the graded response by request id.

Pure parts here: the rubric prompts per check (rubrics.py), the parser of what a judge writes
(verdict.py), and which responses are judged, under which request id (requests.py). The
wiring is the responses sink's (streams/agents/sinks.py): it publishes the judge requests on
llm.requests and stores what comes back; the `judgements` table (migration 013) holds one row
per (judged request id, check).
"""
