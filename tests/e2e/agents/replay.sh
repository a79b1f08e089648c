#!/bin/sh
# A stand-in for an agent CLI: prints a recorded stream (tests/e2e/agents/streams/$1) line by
# line, as `claude -p --output-format stream-json` or `codex exec --json` would, and makes the
# change the stream describes (two -> TWO in app.py) when there is an app.py.
here=$(dirname "$0")
while IFS= read -r line; do
  printf '%s\n' "$line"
done < "$here/streams/$1"
if [ -f app.py ]; then sed -i 's/two/TWO/' app.py; fi
echo "a line on stderr" >&2
