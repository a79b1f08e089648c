#!/bin/sh
# A script "agent" for steering: each turn records what it was given (stdin, the
# directives) in files named after the turn, then the first turn waits — until a file
# `go` appears, or for a minute — and says whether it got to its end. The files go in
# $TURNS_DIR (the test's: the run's own directory is removed when the run ends).
cd "${TURNS_DIR:-.}" || exit 1
turn="$RUNLEDGER_TURN"
cat > "stdin.$turn"
printf '%s' "$RUNLEDGER_DIRECTIVES" > "directives.$turn"
echo $$ > "pid.$turn"
if [ "$turn" = 1 ]; then
    i=0
    while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
fi
echo "turn $turn finished" | tee "finished.$turn"
