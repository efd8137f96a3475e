#!/bin/sh
# Vendor the pinned third-party scripts of the docs site, so that it loads nothing from a CDN.
#
#   sh scripts/vendor-mermaid.sh           fetch each package below with `npm pack` (the npm client
#                                          checks the registry's integrity hash), copy the file into
#                                          docs/assets/javascripts/ with its licence, and record
#                                          package, version and sha256 in vendored.txt
#   sh scripts/vendor-mermaid.sh --check   verify the committed files against vendored.txt (offline)
#
# Why each one (see mkdocs.yml):
#   mermaid        Material for MkDocs renders ```mermaid fences with the global `mermaid`, and
#                  loads https://unpkg.com/mermaid@11/dist/mermaid.min.js only when it is undefined
#                  on DOMContentLoaded; extra_javascript loads this copy before that. Keep the
#                  major version Material asks for (tests/docs/test_site.py checks it).
#   iframe-worker  Material's `offline` plugin adds https://unpkg.com/iframe-worker/shim (search
#                  from file://) unless extra.polyfills already names an "iframe-worker" script.
# To upgrade: change a version below, run this script, commit docs/assets/javascripts/.
# Needs npm (only here, never at build time), tar and sha256sum.
set -eu

# file in docs/assets/javascripts   npm package   version   file in the package tarball
PACKAGES="
mermaid.min.js          mermaid         11.17.2  package/dist/mermaid.min.js
iframe-worker-shim.js   iframe-worker   1.0.4    package/shim/index.js
"

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/docs/assets/javascripts"
record="$dest/vendored.txt"

if [ "${1:-}" = "--check" ]; then
    status=0
    grep -v '^#' "$record" | while read -r file package version sha256 _source; do
        have=$(sha256sum "$dest/$file" | cut -d' ' -f1)
        if [ "$have" != "$sha256" ]; then
            echo "docs/assets/javascripts/$file: sha256 $have, vendored.txt says $sha256;" \
                "run sh scripts/vendor-mermaid.sh" >&2
            exit 1
        fi
        echo "ok: $file = $package@$version"
    done || status=1
    exit $status
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$dest"
{
    echo "# Written by scripts/vendor-mermaid.sh; do not edit. Check with: sh scripts/vendor-mermaid.sh --check"
    echo "# file  npm-package  version  sha256  source (inside the tarball of: npm pack <package>@<version>)"
} >"$work/vendored.txt"

echo "$PACKAGES" | while read -r file package version source; do
    [ -n "$file" ] || continue
    mkdir -p "$work/$package"
    (cd "$work/$package" && npm pack --silent "$package@$version" >/dev/null)
    tarball="$work/$package/$package-$version.tgz"
    [ -f "$tarball" ] || { echo "npm pack did not produce $tarball" >&2; exit 1; }
    tar -xzf "$tarball" -C "$work/$package" package/package.json package/LICENSE "$source"
    packed=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$work/$package/package/package.json" | head -n 1)
    [ "$packed" = "$version" ] || { echo "$package: tarball is $packed, expected $version" >&2; exit 1; }
    cp "$work/$package/$source" "$dest/$file"
    cp "$work/$package/package/LICENSE" "$dest/LICENSE.$package.txt"
    sha256=$(sha256sum "$dest/$file" | cut -d' ' -f1)
    echo "$file $package $version $sha256 $source" >>"$work/vendored.txt"
    echo "vendored $package@$version -> docs/assets/javascripts/$file ($sha256)"
done
cp "$work/vendored.txt" "$record"
