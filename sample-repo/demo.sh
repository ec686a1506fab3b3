#!/usr/bin/env bash
# The walk-through: builds a throwaway git repository from sample-repo/agents
# (a staging branch with a few commits), then runs agentstage's whole story on it:
# validate, diff, publish, edit, history, revert preview, revert, publish again; then
# a server with the hook and a clone that publishes to it.
# Usage: bash sample-repo/demo.sh [DIR]   (default: a new temporary directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$(mktemp -d "${TMPDIR:-/tmp}/agentstage-demo.XXXXXX")}"
repo="$dir/agents-repo"
rm -rf "$repo"
mkdir -p "$repo"

export GIT_AUTHOR_NAME="Alice Admin" GIT_AUTHOR_EMAIL="alice@example.com"
export GIT_COMMITTER_NAME="Alice Admin" GIT_COMMITTER_EMAIL="alice@example.com"
export AGENTSTAGE_AUTHOR="Alice Admin <alice@example.com>"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
expect() {  # expect CODE command...: run, and check the exit code is the documented one
  local want=$1; shift
  printf '\n\033[1m$ %s\033[0m   # exits %s\n' "$*" "$want"
  set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo: expected exit $want, got $got" >&2; exit 1; fi
}

cd "$repo"
git init -q -b staging
agentstage init >/dev/null
cp -R "$here/agents/billing-support" agents/
git add -A && git commit -q -m "Add billing-support"
cp -R "$here/agents/sales-assistant" "$here/agents/hr-helpdesk" agents/
git add -A && git commit -q -m "Add sales-assistant and hr-helpdesk"

echo "A throwaway agents repository at $repo, branch staging:"
git log --oneline

step agentstage validate
step agentstage agents
step agentstage diff billing-support
step agentstage publish billing-support -m "First release of the billing bot"
step agentstage publish sales-assistant -m "First release of the sales assistant"

# Monday: warmer replies; Wednesday: a new knowledge source; Friday: stricter guardrail.
step agentstage set billing-support model.temperature=0.4 -m "Warmer replies"
step agentstage set billing-support 'knowledge[status-page]={type: website, settings: {url: "https://status.example.com"}}' -m "Add the status page"
export AGENTSTAGE_AUTHOR="Bob Builder <bob@example.com>"
step agentstage set billing-support 'tools[web-search].enabled=true' -m "Let it search the web"
step agentstage diff billing-support
expect 1 agentstage diff billing-support --exit-code --format json
step agentstage publish billing-support -m "Warmer tone, status page, web search"
expect 3 agentstage publish billing-support -m "again?"
step agentstage history
step agentstage history billing-support --author bob --format json

# Web search misbehaves in production: undo just that publish, keep later edits.
export AGENTSTAGE_AUTHOR="Alice Admin <alice@example.com>"
step agentstage set billing-support 'instructions[tone].text=Be warm, brief and precise.' -m "Tighter tone"
step agentstage revert billing-support v2 --preview
step agentstage revert billing-support v2 -m "v2 answered off-topic questions"
step agentstage diff billing-support
step agentstage publish billing-support -m "Roll back v2, keep the new tone"
step agentstage history billing-support
step agentstage restore billing-support v1 --preview
step git log --oneline --decorate -n 8

# A team: the repository goes to a server (a bare repository with the server hook), and
# Carol works in her own clone; her publish is fetched first and pushed atomically.
server="$dir/server.git"
rm -rf "$server" "$dir/carol"
git clone -q --bare "$repo" "$server"
step agentstage -C "$server" hooks install --server
step git clone -q "$server" "$dir/carol"
cd "$dir/carol"
export AGENTSTAGE_AUTHOR="Carol Clone <carol@example.com>"
step agentstage agents
step agentstage set hr-helpdesk model.temperature=0.2 -m "Steadier HR answers"
step agentstage publish hr-helpdesk -m "First release of the HR helpdesk"
step git -C "$server" log --oneline --decorate -n 3 staging

printf '\nDone. Explore it yourself: cd %s (and the clone %s)\n' "$repo" "$dir/carol"
