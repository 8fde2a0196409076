# Debian packages (issue 15): debian/ builds shmfs, libshmfs1 and
# libshmfs-dev with `dpkg-buildpackage -us -uc -b`.
#
#   make deb        install the packaging tools when missing, build the
#                   packages from a copy of the checkout into $(DEB_OUT),
#                   lintian them (an error fails)
#   make check-deb  build them, install them, mount the installed daemon
#                   with mount -t fuse.shmfs, use it, purge them, and check
#                   that nothing is left (tests/deb_install.py); part of
#                   make check
DEB_OUT ?= $(B)/deb
DEB_PKGS := debhelper dpkg-dev fakeroot lintian man-db pkg-config

.PHONY: deb deb-deps check-deb

deb-deps:
	@sh scripts/deps.sh $(DEB_PKGS)

deb: deb-deps
	@sh scripts/deb.sh $(DEB_OUT)

check-deb: deb-deps
	$(PYTHON) -m pytest -p no:cacheprovider -q tests/deb_install.py

CHECK_EXTRA += check-deb
