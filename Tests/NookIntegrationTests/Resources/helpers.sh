#!/bin/sh
# Network helper processes (pasta, slirp4netns) of the calling user: its own
# uid or one of its subordinate ids (slirp4netns runs as root of the
# sandbox's user namespace) - those that outlived the nook that started them.
# A helper whose parent is still a nook belongs to a sandbox that runs (tests
# run side by side, images get pasta by default) and is not counted; a
# detached container's monitor is a nook too, started again through
# /proc/self/exe, so its name is "exe".
#
#   helpers.sh list      print the ones left, one a line
#   helpers.sh any       exit 0 when there is a helper at all (left or not)
#   helpers.sh gone      wait up to 5 s for none left, then say
#                        no-helper-left or HELPER-LEFT with the list
list() {
    orphans=${1:-1}
    range=$(awk -F: -v u="$(id -un)" '$1 == u { print $2, $3; exit }' /etc/subuid)
    ps -e -o uid=,pid=,ppid=,comm= | awk -v me="$(id -u)" -v range="$range" -v orphans="$orphans" '
        BEGIN { split(range, r, " ") }
        { comm[$2] = $4 }
        ($1 == me || (r[2] > 0 && $1 >= r[1] && $1 < r[1] + r[2])) && $4 ~ /^(pasta|passt|slirp4netns)/ { cand[$2] = $0; parent[$2] = $3 }
        END { for (p in cand) if (!orphans || comm[parent[p]] !~ /^(nook|exe$)/) print cand[p] }'
}
case "$1" in
list) list ;;
any) [ -n "$(list 0)" ] ;;
gone)
    for i in $(seq 50); do
        [ -z "$(list)" ] && break
        sleep 0.1
    done
    left=$(list)
    if [ -z "$left" ]; then echo no-helper-left; else echo "HELPER-LEFT: $left"; fi
    ;;
esac
