#!/usr/bin/env bash
# Benchmarks: D-Boutique against redis-server, side by side, on loopback.
#   A. One node and one redis-server, each driven by redis-benchmark and by
#      `dboutique bench`: HSET, HGET, SET, GET at pipeline 1 and 16, 50 clients,
#      twice: with the client held to one core (taskset -c 0, GOMAXPROCS=1:
#      the server has the other core, as redis-server's one thread does) and
#      with the client unrestricted. Ratios of throughput and of p99.
#   B. A 3-node cluster reached through node 1: a bucket node 1 owns, one it
#      forwards to the other nodes, and 64 buckets spread over all three;
#      replicated writes against the single node's write rate.
#   C. Memory per entry after loading small entries, as hash fields and as
#      plain keys, each on a fresh redis-server and a fresh node.
#   D. Garbage-collection pauses of a node holding BENCH_GC_ENTRIES plain
#      keys (default 10000000), while loading them and then under load.
# Prints progress to stderr and markdown tables to stdout (also saved as
# bench-results.md in the work directory). Environment: BENCH_SCALE (request
# counts, default 1), BENCH_MEM_ENTRIES (default 1000000), BENCH_GC_ENTRIES,
# BENCH_ONLY (a comma-separated subset of single,cluster,memory,gc; default
# all), BENCH_KEEP=1 keeps the work directory, DBOUTIQUE (the binary; default
# bin/dboutique); a GOMAXPROCS that is set reaches the nodes and is shown in
# the header.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly DBOUTIQUE="${DBOUTIQUE:-$REPO_DIR/bin/dboutique}"
readonly BENCH_SCALE="${BENCH_SCALE:-1}"
readonly BENCH_KEEP="${BENCH_KEEP:-0}"
readonly MEM_ENTRIES="${BENCH_MEM_ENTRIES:-1000000}"
readonly GC_ENTRIES="${BENCH_GC_ENTRIES:-10000000}"
readonly ONLY="${BENCH_ONLY:-single,cluster,memory,gc}"
# The client configurations of table A: the client held to CPU 0 with one
# Go thread, or left to the scheduler.
readonly MODES=(onecore all)
declare -rA MODE_NAME=([onecore]='client on one core' [all]='client unrestricted')

readonly CLIENTS=50
readonly KEYSPACE=100000   # keys the runs pick from (redis-benchmark -r)
readonly MIXED_KEYSPACE=$((KEYSPACE / 64)) # keys per bucket in the cluster's 64-bucket runs
readonly VALUE='xxx'       # redis-benchmark's value; dboutique bench gets --value-size 3
readonly STARTUP_WAIT=30   # seconds a server may take to come up
readonly STOP_WAIT=15      # seconds a server may take to stop before SIGKILL
# Flags every node gets (each also gets --name; nodes 2 and 3 of the cluster
# also get --join and --replicas 2). Ports are picked by the system.
readonly NODE_FLAGS=(--listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 --metrics-addr 127.0.0.1:0
	--cluster "bench-$$" --leave-timeout 2s)

WORK=''                    # the mktemp -d work directory
POLICY_RC_OURS=0           # 1 while our policy-rc.d is in place
POLICY_RC_BACKUP=''        # where a policy-rc.d that was there waits meanwhile
RUN_TIMEOUT=0              # seconds any one client run may take
declare -A PIDS=()         # process name -> pid, for everything we started
declare -A ADDR=()         # process name -> client address host:port
declare -A METRICS=()      # node name -> metrics/pprof address host:port
declare -A PEER=()         # node name -> peer multiaddr to --join
declare -A RES=()          # result key -> "rps p50 p99" (keys like A:HSET:16:rb:redis)
RESULT=''                  # the last client run's "rps p50 p99"

# ---------------------------------------------------------------- helpers --

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# scaled N: N times BENCH_SCALE, at least 1000.
scaled() { awk -v n="$1" -v s="$BENCH_SCALE" 'BEGIN { n = int(n * s); print (n < 1000 ? 1000 : n) }'; }

# fmt_ratio A B: A/B with two decimals, or n/a.
fmt_ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'
}

# fmt_int X: X rounded to an integer, or n/a.
fmt_int() { awk -v x="$1" 'BEGIN { if (x ~ /^-?[0-9.]+$/) printf "%.0f", x; else print "n/a" }'; }

# json_num LINE KEY: the number under KEY in a one-line JSON object.
json_num() { sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\\([-0-9.eE+]*\\).*/\\1/p" <<<"$1"; }

# info_field TEXT FIELD: FIELD's value in INFO output (lines "field:value").
info_field() { tr -d '\r' <<<"$1" | sed -n "s/^$2:\\([0-9]*\\)\$/\\1/p"; }

# vmrss_bytes PID: the process's resident set from /proc, in bytes.
vmrss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds; fails
# after the deadline.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# text_request ADDR LINE: sends one text-protocol request on a new connection
# and prints the reply lines, up to OK or an error, without CRs.
text_request() {
	local addr=$1 fd line
	{ exec {fd}<>"/dev/tcp/${addr%:*}/${addr##*:}"; } 2>/dev/null || return 1
	printf '%s\r\n' "$2" >&"$fd"
	while IFS= read -r -t 5 -u "$fd" line; do
		line=${line%$'\r'}
		printf '%s\n' "$line"
		[[ $line == OK || $line == ERROR* || $line == 'NOT FOUND' || $line == PONG ]] && break
	done
	exec {fd}>&-
}

# ---------------------------------------------------- setup and cleanup --

# cleanup stops everything we started, removes our policy-rc.d and the work
# directory (unless BENCH_KEEP=1). Runs on every exit.
cleanup() {
	local rc=$? name
	trap - EXIT INT TERM
	for name in "${!PIDS[@]}"; do
		stop_proc "$name"
	done
	remove_policy_rc
	if [[ -n $WORK ]]; then
		if [[ $BENCH_KEEP == 1 ]]; then
			log "kept the work directory $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}

# remove_policy_rc removes our policy-rc.d and puts back the one that was
# there before, if any.
remove_policy_rc() {
	((POLICY_RC_OURS)) || return 0
	rm -f /usr/sbin/policy-rc.d
	if [[ -n $POLICY_RC_BACKUP ]]; then
		mv "$POLICY_RC_BACKUP" /usr/sbin/policy-rc.d
	fi
	POLICY_RC_OURS=0 POLICY_RC_BACKUP=''
}

# install_tools installs Debian's redis-server, redis-tools and curl when
# their commands are missing, without letting the package start a service.
install_tools() {
	local -A pkg_of=([redis-server]=redis-server [redis-cli]=redis-tools
		[redis-benchmark]=redis-tools [curl]=curl)
	local cmd pkgs=()
	for cmd in "${!pkg_of[@]}"; do
		command -v "$cmd" >/dev/null || pkgs+=("${pkg_of[$cmd]}")
	done
	((${#pkgs[@]} > 0)) || return 0
	mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
	if ((EUID != 0)); then
		log "missing commands; as root, run: apt-get install ${pkgs[*]}"
		exit 1
	fi
	log "installing ${pkgs[*]} (no service is started)"
	# invoke-rc.d asks policy-rc.d first: exit code 101 forbids any start.
	if [[ -e /usr/sbin/policy-rc.d ]]; then
		POLICY_RC_BACKUP=$(mktemp /usr/sbin/policy-rc.d.bench.XXXXXX)
		cp -p /usr/sbin/policy-rc.d "$POLICY_RC_BACKUP"
	fi
	POLICY_RC_OURS=1
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q "${pkgs[@]}" >&2; then
		apt-get update -q >&2
		apt-get install -y -q "${pkgs[@]}" >&2
	fi
	remove_policy_rc
}

# ensure_binary builds the node binary if it is not there.
ensure_binary() {
	[[ -x $DBOUTIQUE ]] && return 0
	command -v go >/dev/null || die "$DBOUTIQUE is missing and there is no go to build it"
	log "building $DBOUTIQUE"
	(cd "$REPO_DIR" && go build -o "$DBOUTIQUE" ./cmd/dboutique)
}

# ------------------------------------------------------------- processes --

# gone PID: the process has exited.
gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_proc NAME: SIGTERM, wait up to STOP_WAIT seconds, then SIGKILL; reaps it.
stop_proc() {
	local name=$1 pid=${PIDS[$1]:-}
	[[ -n $pid ]] || return 0
	unset "PIDS[$name]"
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_for "$STOP_WAIT" gone "$pid"; then
		log "warning: $name (pid $pid) did not stop in ${STOP_WAIT}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# redis_is_ours PORT PID: the redis-server answering on PORT is process PID.
redis_is_ours() {
	local info
	info=$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" INFO server 2>/dev/null) || return 1
	[[ $(info_field "$info" process_id) == "$2" ]]
}

# redis_up_or_gone PORT PID: the redis-server has come up, or has exited.
redis_up_or_gone() { redis_is_ours "$1" "$2" || gone "$2"; }

# pick_port: a random port below the range the kernel hands out to outgoing
# connections (the benchmarks leave thousands of those in TIME_WAIT there).
pick_port() {
	local low=32768
	if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
		read -r low _ </proc/sys/net/ipv4/ip_local_port_range
	fi
	if ((low > 12000)); then echo $((10000 + RANDOM % (low - 10000))); else echo $((61000 + RANDOM % 4000)); fi
}

# start_redis NAME: a redis-server on a free loopback port, no persistence.
# It tries random ports until one is free and answers PING as our process.
start_redis() {
	local name=$1 port pid attempt
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		port=$(pick_port)
		# Something already answers there: not ours, leave it alone.
		if timeout 2 redis-cli -h 127.0.0.1 -p "$port" PING >/dev/null 2>&1; then continue; fi
		redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no \
			>"$WORK/$name.log" 2>&1 &
		pid=$!
		PIDS[$name]=$pid
		if wait_for "$STARTUP_WAIT" redis_up_or_gone "$port" "$pid" && redis_is_ours "$port" "$pid"; then
			ADDR[$name]=127.0.0.1:$port
			log "$name: redis-server pid $pid on 127.0.0.1:$port"
			return 0
		fi
		log "redis-server on port $port did not come up (attempt $attempt): $(tail -n 1 "$WORK/$name.log")"
		stop_proc "$name"
	done
	die "could not start redis-server; see $WORK/$name.log"
}

# log_value FILE MESSAGE: the word that follows MESSAGE in the node's log.
log_value() { sed -n "s/.*$2 \\([^[:space:]]*\\).*/\\1/p;T;q" "$1"; }

# node_ready FILE: the node has logged every address we need.
node_ready() {
	grep -q 'Accepting connections on ' "$1" && grep -q 'Peer address ' "$1" &&
		grep -q 'Serving metrics and pprof on ' "$1"
}

# node_ready_or_gone FILE PID: the node is ready, or has exited.
node_ready_or_gone() { node_ready "$1" || gone "$2"; }

# start_node NAME [JOIN_MULTIADDR]: a node on loopback with ports picked by
# the system; reads its addresses from its log.
start_node() {
	local name=$1 join=${2:-} logf=$WORK/$1.log pid
	local args=("${NODE_FLAGS[@]}" --name "$name")
	if [[ -n $join ]]; then args+=(--join "$join" --replicas 2); fi
	"$DBOUTIQUE" "${args[@]}" 2>"$logf" &
	pid=$!
	PIDS[$name]=$pid
	if ! wait_for "$STARTUP_WAIT" node_ready_or_gone "$logf" "$pid" || ! node_ready "$logf"; then
		tail -n 20 "$logf" >&2
		die "node $name did not start; see its log above"
	fi
	ADDR[$name]=$(log_value "$logf" 'Accepting connections on')
	METRICS[$name]=$(log_value "$logf" 'Serving metrics and pprof on')
	PEER[$name]=$(log_value "$logf" 'Peer address')
	log "$name: dboutique pid $pid on ${ADDR[$name]}, metrics ${METRICS[$name]}"
}

# cluster_settled NAME...: each node sees every node alive.
cluster_settled() {
	local name alive
	for name in "$@"; do
		alive=$(text_request "${ADDR[$name]}" NODES | grep -c ' alive' || true)
		((alive == $#)) || return 1
	done
}

# --------------------------------------------------------------- loading --

# run_waited STDIN_FD OUT ERR CMD...: runs CMD under a timeout in the
# background and waits for it. A trapped signal interrupts `wait` at once,
# whereas a foreground child that catches Ctrl-C and exits normally (as
# dboutique bench does) would make bash drop the INT trap; while it runs, the
# child is in PIDS so that cleanup stops it. STDIN_FD '-': no input.
run_waited() {
	local in=$1 out=$2 err=$3 rc=0
	shift 3
	if [[ $in == - ]]; then
		timeout "$RUN_TIMEOUT" "$@" >"$out" 2>"$err" </dev/null &
	else
		timeout "$RUN_TIMEOUT" "$@" >"$out" 2>"$err" <&"$in" &
	fi
	PIDS[client]=$!
	wait "${PIDS[client]}" || rc=$?
	unset 'PIDS[client]'
	return "$rc"
}

# fill_resp ADDR TYPE: sets key:000000000000 .. key:<KEYSPACE-1> (redis-benchmark's
# names for __rand_int__) as fields of hash "bench" or as plain keys, sending
# every command at once over /dev/tcp and counting the error replies.
fill_resp() {
	local addr=$1 type=$2 file=$WORK/fill-$2.resp fd replies errors
	if [[ ! -f $file ]]; then
		awk -v n="$KEYSPACE" -v type="$type" -v val="$VALUE" 'BEGIN {
			for (i = 0; i < n; i++) {
				key = sprintf("key:%012d", i)
				if (type == "hash")
					printf "*4\r\n$4\r\nHSET\r\n$5\r\nbench\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(key), key, length(val), val
				else
					printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(key), key, length(val), val
			}
		}' >"$file"
	fi
	exec {fd}<>"/dev/tcp/${addr%:*}/${addr##*:}"
	cat "$file" >&"$fd" &
	PIDS[writer]=$!
	# Every reply to HSET and SET is one line; errors start with '-'.
	run_waited "$fd" "$WORK/fill.out" /dev/null head -n "$KEYSPACE" || true
	stop_proc writer
	exec {fd}>&-
	read -r replies errors < <(awk '/^-/ { e++ } END { print NR, e + 0 }' "$WORK/fill.out")
	if ((replies != KEYSPACE || errors != 0)); then
		log "warning: filling $type keys on $addr: $replies of $KEYSPACE replies, $errors errors"
	fi
}

# CLIENT: what client commands run under, for the client configuration of
# the runs: set_mode onecore or all (B, C and D: unrestricted).
CLIENT=()

set_mode() {
	case $1 in
	onecore) CLIENT=(env GOMAXPROCS=1 taskset -c 0) ;;
	*) CLIENT=() ;;
	esac
}

# dbench ARGS...: runs `dboutique bench` with 50 clients and JSON output and
# sets RESULT to "rps p50 p99", or "n/a n/a n/a" when it fails. QUIET=1: no
# progress line.
dbench() {
	local json errors
	RESULT='n/a n/a n/a'
	if ! run_waited - "$WORK/dbench.out" "$WORK/dbench.err" "${CLIENT[@]}" "$DBOUTIQUE" bench \
		--clients "$CLIENTS" --progress 0 --format json "$@"; then
		log "warning: dboutique bench $* failed: $(tail -n 3 "$WORK/dbench.err")"
		return 0
	fi
	json=$(grep '^{' "$WORK/dbench.out" | tail -n 1)
	errors=$(json_num "$json" errors)
	[[ ${errors:-0} == 0 ]] || log "warning: $errors errors in dboutique bench $*"
	RESULT="$(json_num "$json" rps) $(json_num "$json" p50_ms) $(json_num "$json" p99_ms)"
	[[ ${QUIET:-0} == 1 ]] || log "  -> $(fmt_int "${RESULT%% *}") req/s"
}

# rbench ADDR PIPELINE REQUESTS COMMAND...: runs redis-benchmark with a
# custom command and sets RESULT to "rps p50 p99", or "n/a n/a n/a" when it
# fails.
rbench() {
	local addr=$1 pipeline=$2 requests=$3
	shift 3
	RESULT='n/a n/a n/a'
	if ! run_waited - "$WORK/rbench.out" "$WORK/rbench.err" "${CLIENT[@]}" redis-benchmark -h "${addr%:*}" \
		-p "${addr##*:}" -c "$CLIENTS" -n "$requests" -P "$pipeline" -r "$KEYSPACE" --csv "$@"; then
		log "warning: redis-benchmark $* failed: $(tail -n 3 "$WORK/rbench.err")"
		return 0
	fi
	if grep -qi 'error' "$WORK/rbench.err"; then
		log "warning: redis-benchmark $* on $addr: $(grep -i -m 1 'error' "$WORK/rbench.err")"
	fi
	# The last line: "name","rps","avg","min","p50","p95","p99","max".
	RESULT=$(tail -n 1 "$WORK/rbench.out" | tr -d '"\r' | awk -F, '{ print $(NF-6), $(NF-3), $(NF-1) }')
	log "  -> $(fmt_int "${RESULT%% *}") req/s"
}

# ---------------------------------------------------------------- runs --

# redis_command CMD: redis-benchmark's arguments for CMD.
redis_command() {
	case $1 in
	HSET) echo "HSET bench key:__rand_int__ $VALUE" ;;
	HGET) echo 'HGET bench key:__rand_int__' ;;
	SET) echo "SET key:__rand_int__ $VALUE" ;;
	GET) echo 'GET key:__rand_int__' ;;
	esac
}

# dbench_args CMD: dboutique bench's --type and --workload for CMD.
dbench_args() {
	case $1 in
	HSET) echo '--type hash --workload put' ;;
	HGET) echo '--type hash --workload get' ;;
	SET) echo '--type string --workload put' ;;
	GET) echo '--type string --workload get' ;;
	esac
}

# requests_for PIPELINE: requests per run, sized for 2-3 s on 2 cores.
requests_for() { if (($1 == 1)); then scaled 100000; else scaled 1000000; fi; }

# fill_both ADDR: fills the hash and plain keyspaces of both clients.
fill_both() {
	local type
	for type in hash string; do
		fill_resp "$1" "$type"
		dbench --addr "$1" --proto resp --type "$type" --workload put --sequential \
			--keyspace "$KEYSPACE" --requests "$KEYSPACE" --pipeline 16 --value-size 3
	done
}

# run_single: table A, a single node against one redis-server, in each
# client configuration.
run_single() {
	local cmd p client server n mode
	log 'A: starting redis-server and a single node'
	start_redis redis
	start_node single
	for server in redis single; do
		log "A: filling $KEYSPACE hash fields and $KEYSPACE plain keys on $server"
		fill_both "${ADDR[$server]}"
	done
	for mode in "${MODES[@]}"; do
		set_mode "$mode"
		for cmd in HSET HGET SET GET; do
			for p in 1 16; do
				n=$(requests_for "$p")
				for server in redis single; do
					log "A ($mode): $cmd P$p on $server: redis-benchmark, $n requests"
					# shellcheck disable=SC2046 # the command's words split on purpose
					rbench "${ADDR[$server]}" "$p" "$n" $(redis_command "$cmd")
					RES[A:$mode:$cmd:$p:rb:$server]=$RESULT
					log "A ($mode): $cmd P$p on $server: dboutique bench, $n requests"
					# shellcheck disable=SC2046
					dbench --addr "${ADDR[$server]}" --proto resp $(dbench_args "$cmd") \
						--pipeline "$p" --requests "$n" --keyspace "$KEYSPACE" --value-size 3
					RES[A:$mode:$cmd:$p:db:$server]=$RESULT
				done
			done
		done
	done
	set_mode all
	stop_proc redis
	stop_proc single
}

# owners NODE BUCKET: the names of the nodes holding BUCKET, primary first.
owners() { text_request "${ADDR[$1]}" "OWNER $2" | awk '$0 == "OK" || /^ERROR/ { exit } { print $1 }'; }

# run_cluster: table B, three nodes, every request sent to n1.
run_cluster() {
	local i b local_b='' fwd_b='' list p n cmd where
	log 'B: starting a 3-node cluster'
	start_node n1
	start_node n2 "${PEER[n1]}"
	start_node n3 "${PEER[n1]}"
	wait_for 60 cluster_settled n1 n2 n3 || die 'the cluster did not settle: not every node sees 3 alive'
	for ((i = 0; i < 1000; i++)); do
		b=bucket$i
		list=$(owners n1 "$b" | tr '\n' ' ')
		if [[ -z $local_b && $list == 'n1 '* ]]; then local_b=$b; fi
		if [[ -z $fwd_b && -n $list && $list != *'n1 '* ]]; then fwd_b=$b; fi
		[[ -n $local_b && -n $fwd_b ]] && break
	done
	[[ -n $local_b && -n $fwd_b ]] || die "no local or no forwarded bucket found (last owners: $list)"
	log "B: local bucket $local_b, forwarded bucket $fwd_b (owners: $(owners n1 "$fwd_b" | tr '\n' ' '))"
	RES[B:buckets]="$local_b $fwd_b"
	local -A sel=([local]="--bucket $local_b --buckets 1 --keyspace $KEYSPACE"
		[forwarded]="--bucket $fwd_b --buckets 1 --keyspace $KEYSPACE"
		[mixed]="--bucket mixed --buckets 64 --keyspace $MIXED_KEYSPACE")
	for where in local forwarded; do
		log "B: filling $KEYSPACE keys ($where)"
		# shellcheck disable=SC2086 # sel's words split on purpose
		dbench --addr "${ADDR[n1]}" --proto resp --type hash --workload put --sequential \
			--requests "$KEYSPACE" --pipeline 16 --value-size 3 ${sel[$where]}
	done
	# The 64-bucket runs pick a bucket at random per request: each of
	# mixed:0 .. mixed:63 gets every key, one bucket at a time.
	log "B: filling 64 buckets of $MIXED_KEYSPACE keys (mixed)"
	for ((i = 0; i < 64; i++)); do
		QUIET=1 dbench --addr "${ADDR[n1]}" --proto resp --type hash --workload put --sequential \
			--requests "$MIXED_KEYSPACE" --pipeline 16 --value-size 3 \
			--bucket "mixed:$i" --buckets 1 --keyspace "$MIXED_KEYSPACE"
	done
	for cmd in HGET HSET; do
		for p in 1 16; do
			n=$(requests_for "$p")
			for where in local forwarded mixed; do
				log "B: $cmd P$p $where, $n requests"
				# shellcheck disable=SC2046,SC2086
				dbench --addr "${ADDR[n1]}" --proto resp $(dbench_args "$cmd") \
					--pipeline "$p" --requests "$n" --value-size 3 ${sel[$where]}
				RES[B:$cmd:$p:$where]=$RESULT
			done
		done
	done
	stop_proc n3
	stop_proc n2
	stop_proc n1
}

# node_heap NAME: the node's live heap after a forced GC (INFO used_memory).
node_heap() {
	local addr=${ADDR[$1]} info
	curl -s "http://${METRICS[$1]}/debug/pprof/heap?gc=1" -o /dev/null || log "warning: no GC on $1"
	info=$(timeout 5 redis-cli -h "${addr%:*}" -p "${addr##*:}" INFO memory 2>/dev/null || true)
	info_field "$info" used_memory
}

# redis_used NAME: redis-server's used_memory.
redis_used() {
	local addr=${ADDR[$1]}
	info_field "$(redis-cli -h "${addr%:*}" -p "${addr##*:}" INFO memory)" used_memory
}

# per_entry BEFORE AFTER: bytes per entry between two readings, or n/a.
per_entry() {
	awk -v a="$1" -v b="$2" -v n="$MEM_ENTRIES" 'BEGIN {
		if (a !~ /^[0-9]+$/ || b !~ /^[0-9]+$/) print "n/a"; else printf "%.1f", (b - a) / n }'
}

# run_memory TYPE: table C's row for TYPE (hash or string) on fresh servers.
run_memory() {
	local type=$1 load=(--sequential --workload put --keyspace "$MEM_ENTRIES" --requests "$MEM_ENTRIES"
		--value-size 8 --pipeline 16 --proto resp --type "$1")
	[[ $type == hash ]] && load+=(--buckets 1000)
	log "C: $type: fresh redis-server and node, loading $MEM_ENTRIES entries into each"
	start_redis mredis
	start_node mnode
	local ru0 rr0 nh0 nr0 ru1 rr1 nh1 nr1
	ru0=$(redis_used mredis) rr0=$(vmrss_bytes "${PIDS[mredis]}")
	nh0=$(node_heap mnode) nr0=$(vmrss_bytes "${PIDS[mnode]}")
	dbench --addr "${ADDR[mredis]}" "${load[@]}"
	dbench --addr "${ADDR[mnode]}" "${load[@]}"
	ru1=$(redis_used mredis) rr1=$(vmrss_bytes "${PIDS[mredis]}")
	nh1=$(node_heap mnode) nr1=$(vmrss_bytes "${PIDS[mnode]}")
	RES[C:$type]="$(per_entry "$ru0" "$ru1") $(per_entry "$rr0" "$rr1") $(per_entry "$nh0" "$nh1") $(per_entry "$nr0" "$nr1")"
	stop_proc mredis
	stop_proc mnode
}

# gc_pauses NAME: the node's GC pause summary from its metrics:
# "cycles p50 p75 max" in milliseconds (go_gc_duration_seconds).
gc_pauses() {
	curl -s "http://${METRICS[$1]}/metrics" | awk '
		/^go_gc_duration_seconds\{quantile="0.5"\}/ { p50 = $2 * 1000 }
		/^go_gc_duration_seconds\{quantile="0.75"\}/ { p75 = $2 * 1000 }
		/^go_gc_duration_seconds\{quantile="1"\}/ { mx = $2 * 1000 }
		/^go_gc_duration_seconds_count/ { n = $2 }
		END { if (n == "") print "n/a n/a n/a n/a"; else printf "%d %.3f %.3f %.3f\n", n, p50, p75, mx }'
}

# run_gc: table D, GC pauses of a node holding GC_ENTRIES plain keys:
# while they are loaded, then under a mixed load of SET and GET.
run_gc() {
	local load=(--sequential --workload put --keyspace "$GC_ENTRIES" --requests "$GC_ENTRIES"
		--value-size 8 --pipeline 16 --proto resp --type string)
	log "D: loading $GC_ENTRIES plain keys into a fresh node"
	start_node gcnode
	dbench --addr "${ADDR[gcnode]}" "${load[@]}"
	RES[D:load]="$(gc_pauses gcnode) $(vmrss_bytes "${PIDS[gcnode]}")"
	log "D: SET and GET (half each) for 20 s over the $GC_ENTRIES keys"
	dbench --addr "${ADDR[gcnode]}" --workload mixed --get-ratio 0.5 --keyspace "$GC_ENTRIES" \
		--duration 20s --pipeline 16 --value-size 8 --proto resp --type string
	RES[D:run]="$(gc_pauses gcnode) $(vmrss_bytes "${PIDS[gcnode]}")"
	stop_proc gcnode
}

# --------------------------------------------------------------- report --

# header: where and on what the numbers were measured.
header() {
	local commit dirty=''
	commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$REPO_DIR" --no-optional-locks status --porcelain 2>/dev/null) ]]; then
		dirty=' (with uncommitted changes)'
	fi
	echo '# D-Boutique vs redis-server'
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- CPU: $(sed -n 's/^model name[[:space:]]*: //p;T;q' /proc/cpuinfo), $(nproc) usable of $(grep -c '^processor' /proc/cpuinfo)"
	echo "- redis-server: $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"
	echo "- go: $(go version 2>/dev/null | awk '{ print $3 }' || echo unknown)"
	echo "- commit: $commit$dirty"
	if [[ -n ${GOMAXPROCS:-} ]]; then echo "- GOMAXPROCS: $GOMAXPROCS"; fi
	echo "- node flags: ${NODE_FLAGS[*]} --name NAME; cluster nodes 2 and 3 add --join <node 1> --replicas 2"
	echo "- $CLIENTS clients; requests per run: $(requests_for 1) at pipeline 1, $(requests_for 16) at pipeline 16 (BENCH_SCALE=$BENCH_SCALE); keyspace $KEYSPACE"
}

# lat P50 P99: "p50 / p99" in ms, or n/a.
lat() { if [[ $1 == n/a || -z $1 ]]; then echo n/a; else echo "$1 / $2"; fi; }

table_single() {
	local cmd p client r d mode
	local -A client_name=([rb]=redis-benchmark [db]='dboutique bench')
	echo
	echo '## A. Single node vs redis-server'
	for mode in "${MODES[@]}"; do
		echo
		echo "### ${MODE_NAME[$mode]}"
		echo
		echo '| command | pipeline | client | redis-server req/s | dboutique req/s | dboutique/redis | redis p50 / p99 ms | dboutique p50 / p99 ms | p99 dboutique/redis |'
		echo '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |'
		for cmd in HSET HGET SET GET; do
			for p in 1 16; do
				for client in rb db; do
					read -r -a r <<<"${RES[A:$mode:$cmd:$p:$client:redis]:-n/a n/a n/a}"
					read -r -a d <<<"${RES[A:$mode:$cmd:$p:$client:single]:-n/a n/a n/a}"
					echo "| $cmd | $p | ${client_name[$client]} | $(fmt_int "${r[0]}") | $(fmt_int "${d[0]}") | $(fmt_ratio "${d[0]}" "${r[0]}") | $(lat "${r[1]}" "${r[2]}") | $(lat "${d[1]}" "${d[2]}") | $(fmt_ratio "${d[2]}" "${r[2]}") |"
				done
			done
		done
	done
}

table_cluster() {
	local cmd p l f m buckets
	read -r -a buckets <<<"${RES[B:buckets]:-n/a n/a}"
	echo
	echo '## B. 3-node cluster, every request sent to node 1 (dboutique bench, RESP)'
	echo
	echo "Local: bucket ${buckets[0]}, primary on node 1. Forwarded: bucket ${buckets[1]}, held by nodes 2 and 3 only."
	echo "Both with $KEYSPACE keys. Mixed: 64 buckets spread over the cluster, $MIXED_KEYSPACE keys each, a random bucket per request."
	echo
	echo "Single node: the same command through the single node of table A (dboutique bench, client unrestricted); replicated writes go to 2 owners."
	echo
	echo '| command | pipeline | local req/s | forwarded req/s | forwarded/local | mixed (64 buckets) req/s | mixed/local | single node req/s | local/single node | local p50 / p99 ms | forwarded p50 / p99 ms |'
	echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
	for cmd in HGET HSET; do
		for p in 1 16; do
			read -r -a l <<<"${RES[B:$cmd:$p:local]:-n/a n/a n/a}"
			read -r -a f <<<"${RES[B:$cmd:$p:forwarded]:-n/a n/a n/a}"
			read -r -a m <<<"${RES[B:$cmd:$p:mixed]:-n/a n/a n/a}"
			read -r -a one <<<"${RES[A:all:$cmd:$p:db:single]:-n/a n/a n/a}"
			echo "| $cmd | $p | $(fmt_int "${l[0]}") | $(fmt_int "${f[0]}") | $(fmt_ratio "${f[0]}" "${l[0]}") | $(fmt_int "${m[0]}") | $(fmt_ratio "${m[0]}" "${l[0]}") | $(fmt_int "${one[0]}") | $(fmt_ratio "${l[0]}" "${one[0]}") | $(lat "${l[1]}" "${l[2]}") | $(lat "${f[1]}" "${f[2]}") |"
		done
	done
}

table_memory() {
	local type v
	echo
	echo "## C. Memory per entry ($MEM_ENTRIES entries, 8-byte values, bytes per entry)"
	echo
	echo 'Redis used_memory from INFO; node heap = INFO used_memory after a forced GC; RSS = VmRSS from /proc.'
	echo
	echo '| entries as | redis used_memory | redis RSS | node heap | node RSS | node heap / redis used_memory | node RSS / redis RSS |'
	echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'
	for type in hash string; do
		read -r -a v <<<"${RES[C:$type]}"
		echo "| $([[ $type == hash ]] && echo 'hash fields (1000 buckets)' || echo 'plain keys') | ${v[0]} | ${v[1]} | ${v[2]} | ${v[3]} | $(fmt_ratio "${v[2]}" "${v[0]}") | $(fmt_ratio "${v[3]}" "${v[1]}") |"
	done
}

table_gc() {
	local phase v
	echo
	echo "## D. Garbage-collection pauses, $GC_ENTRIES plain keys (8-byte values) on one node"
	echo
	echo 'Stop-the-world pauses from the Go runtime (go_gc_duration_seconds, cumulative since the node started).'
	echo
	echo '| after | GC cycles | pause p50 ms | pause p75 ms | pause max ms | node RSS bytes/entry |'
	echo '| --- | ---: | ---: | ---: | ---: | ---: |'
	for phase in load run; do
		read -r -a v <<<"${RES[D:$phase]:-n/a n/a n/a n/a n/a}"
		echo "| $([[ $phase == load ]] && echo "loading $GC_ENTRIES keys" || echo 'and 20 s of SET/GET') | ${v[0]} | ${v[1]} | ${v[2]} | ${v[3]} | $(awk -v r="${v[4]}" -v n="$GC_ENTRIES" 'BEGIN { if (r ~ /^[0-9]+$/) printf "%.1f", r / n; else print "n/a" }') |"
	done
}

# wanted PART: PART is in BENCH_ONLY.
wanted() { [[ ,$ONLY, == *,$1,* ]]; }

# ----------------------------------------------------------------- main --

main() {
	awk -v s="$BENCH_SCALE" 'BEGIN { exit !(s ~ /^[0-9]*\.?[0-9]+$/ && s > 0) }' ||
		die "BENCH_SCALE must be a positive number, not '$BENCH_SCALE'"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	install_tools
	RUN_TIMEOUT=$(awk -v s="$BENCH_SCALE" 'BEGIN { print int(60 + 240 * s) }')
	WORK=$(mktemp -d -t dboutique-bench.XXXXXX)
	ensure_binary
	log "work directory $WORK"

	if wanted single; then run_single; fi
	if wanted cluster; then run_cluster; fi
	if wanted memory; then
		run_memory hash
		run_memory string
	fi
	if wanted gc; then run_gc; fi

	{
		header
		if wanted single; then table_single; fi
		if wanted cluster; then table_cluster; fi
		if wanted memory; then table_memory; fi
		if wanted gc; then table_gc; fi
	} | tee "$WORK/bench-results.md"
}

main "$@"
