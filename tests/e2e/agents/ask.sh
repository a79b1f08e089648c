#!/bin/sh
# A script "agent" that asks a person through the reference runner's gate pipes (README,
# "Gates from an agent") and prints the reply it gets, one JSON line.
printf '%s\n' '{"gate": {"kind": "question", "prompt": "Which database?"}}' \
    > "$RUNLEDGER_GATE_REQUESTS"
read -r reply < "$RUNLEDGER_GATE_RESPONSES"
echo "reply: $reply"
