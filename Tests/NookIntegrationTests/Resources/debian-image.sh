#!/bin/sh
# Builds real Debian images for nook's tests, once, and caches them outside
# the repository (NOOK_TEST_CACHE, default /var/tmp/nook-test-cache):
#
#   debian-oci/           an OCI image layout made by umoci, tags
#                         bookworm (one layer: debootstrap --variant=minbase)
#                         and bookworm-changed (a second layer that deletes
#                         files and a directory, adds a setuid file, a file
#                         capability, an xattr and a hard link)
#   debian.tar            docker-archive of bookworm-changed made by skopeo,
#                         named localhost/debian:changed
#
# Runs as root (debootstrap, and umoci keeping owners). Prints the cache
# directory on success; on failure prints why on stderr and exits non-zero,
# so that the tests can skip with that reason.
set -eu
cache=${NOOK_TEST_CACHE:-/var/tmp/nook-test-cache}
mkdir -p "$cache"
cd "$cache"
exec 9>"$cache/.lock"
flock 9

for tool in debootstrap umoci skopeo setcap setfattr; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed (script/test installs it)" >&2; exit 2; }
done

if [ ! -e debian-rootfs/.done ]; then
    rm -rf debian-rootfs.tmp
    if ! debootstrap --variant=minbase bookworm debian-rootfs.tmp http://deb.debian.org/debian >debootstrap.log 2>&1; then
        echo "debootstrap failed (see $cache/debootstrap.log): $(tail -1 debootstrap.log)" >&2
        exit 2
    fi
    rm -rf debian-rootfs
    mv debian-rootfs.tmp debian-rootfs
    touch debian-rootfs/.done
fi

if [ ! -e debian.tar ]; then
    rm -rf debian-oci bundle debian.tar.tmp
    umoci init --layout debian-oci
    umoci new --image debian-oci:bookworm
    umoci unpack --image debian-oci:bookworm bundle >/dev/null
    # Everything but the marker, owners, modes, links and xattrs kept.
    (cd debian-rootfs && tar --xattrs --xattrs-include='*' --numeric-owner --exclude=./.done -cf - .) \
        | (cd bundle/rootfs && tar --xattrs --xattrs-include='*' --numeric-owner -xpf -)
    # --refresh-bundle: the second layer is then what changed since this one.
    umoci repack --refresh-bundle --image debian-oci:bookworm bundle >/dev/null

    # Layer 2: deletions (a file, a directory), replacements, a setuid file,
    # a file capability, a user xattr and a hard link.
    rm -rf bundle/rootfs/usr/share/doc bundle/rootfs/etc/motd
    echo replaced > bundle/rootfs/etc/issue
    cp bundle/rootfs/usr/bin/true bundle/rootfs/usr/local/bin/suid-true
    chmod 4755 bundle/rootfs/usr/local/bin/suid-true
    cp bundle/rootfs/usr/bin/true bundle/rootfs/usr/local/bin/cap-true
    setcap cap_net_raw+p bundle/rootfs/usr/local/bin/cap-true
    echo note > bundle/rootfs/etc/noted
    setfattr -n user.note -v kept bundle/rootfs/etc/noted
    ln bundle/rootfs/usr/local/bin/cap-true bundle/rootfs/usr/local/bin/cap-true-link
    umoci repack --image debian-oci:bookworm-changed bundle >/dev/null
    for tag in bookworm bookworm-changed; do
        umoci config --image debian-oci:$tag --config.cmd /bin/bash --config.workingdir /root \
            --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --config.exposedports 8080/tcp --config.label org.example.test=nook >/dev/null
    done
    umoci gc --layout debian-oci
    rm -rf bundle
    skopeo copy --quiet oci:debian-oci:bookworm-changed docker-archive:debian.tar.tmp:localhost/debian:changed
    mv debian.tar.tmp debian.tar
fi
chmod -R a+rX debian-oci debian.tar
echo "$cache"
