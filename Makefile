# Trellis developer entry points. `make up` and `make test` set up everything they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

K8S_VERSION    := v1.35.4
HELM_VERSION   := v3.21.4
SANITY_VERSION := v5.4.0
CSI_SPEC       := v1.12.0
# k8s.io/kubelet module of K8S_VERSION (v1.X.Y -> v0.X.Y): the plugin registration API's proto.
KUBELET_API    := $(patsubst v1.%,v0.%,$(K8S_VERSION))
# Talos' API protos: from the root module github.com/siderolabs/talos at the version of
# pkg/machinery hack/talosvalidate pins (the machinery module ships only generated Go code).
TALOS_API      := $(shell awk '$$1 == "require" && $$2 == "github.com/siderolabs/talos/pkg/machinery" {print $$3}' hack/talosvalidate/go.mod)
TALOS_STUBS    := operators/talosdevice/_gen/machine_pb2.py
# CSI sidecars built from their Go modules (hack/csi-sidecars.sh) and shipped as images (make image).
PROVISIONER_VERSION := v6.3.0
SNAPSHOTTER_VERSION := v8.7.0
export PROVISIONER_VERSION SNAPSHOTTER_VERSION

VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := bin
export GOTOOLCHAIN := local
export GOFLAGS     := -mod=mod
export PATH        := $(CURDIR)/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean

PYTEST_ARGS ?=

.PHONY: help up down status test unit lint crds tools sysdeps venv bench clean bench-csi image FORCE
help:
	@echo "make up     - start control plane, simulators, operators and CSI driver with the examples"
	@echo "make test   - set everything up and run the whole test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make image  - build every container image into build/images/ (IMAGE_BASE, IMAGE_REGISTRY)"
	@echo "make crds   - regenerate crds/ and the chart's CRDs from the pydantic models"
	@echo "make down   - stop what 'make up' started"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@
venv: $(VENV)/.installed

# Debian packages for the real components the tests drive (root, apt).
build/.sysdeps: hack/install-deps.sh
	bash hack/install-deps.sh
	mkdir -p build && touch $@
sysdeps: build/.sysdeps

$(BIN)/trellis-testenv: hack/testenv/go.mod hack/testenv/go.sum $(wildcard hack/testenv/*.go)
	mkdir -p $(BIN)
	cd hack/testenv && CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(CURDIR)/$@ .
# The test node's kubelet and kube-proxy (hack/labnode): same module set as trellis-testenv, its
# own binary so sessions without a node do not link a kubelet. Warm Go cache: seconds.
$(BIN)/trellis-node: hack/testenv/go.mod hack/testenv/go.sum $(wildcard hack/testenv/node/*.go)
	mkdir -p $(BIN)
	cd hack/testenv && CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(CURDIR)/$@ ./node
$(BIN)/kubectl: $(BIN)/trellis-testenv
	ln -sf trellis-testenv $@
$(BIN)/helm:
	GOBIN=$(CURDIR)/$(BIN) CGO_ENABLED=0 go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
$(BIN)/csi-sanity:
	GOBIN=$(CURDIR)/$(BIN) CGO_ENABLED=0 go install github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$(SANITY_VERSION)
$(BIN)/talos-validate: hack/talosvalidate/go.mod hack/talosvalidate/go.sum $(wildcard hack/talosvalidate/*.go)
	cd hack/talosvalidate && CGO_ENABLED=0 go build -trimpath -o $(CURDIR)/$@ .
build/proto/csi.proto: hack/module-file.sh
	bash hack/module-file.sh github.com/container-storage-interface/spec@$(CSI_SPEC) csi.proto $@
# kubelet's plugin registration API (the CSI node plugin registers itself), kept as its own name.
build/proto/pluginregistration.proto: hack/module-file.sh
	bash hack/module-file.sh k8s.io/kubelet@$(KUBELET_API) pkg/apis/pluginregistration/v1/api.proto $@
# Rebuilt when hack/csi-sidecars.sh or a version above changes (build/.sidecar-versions).
build/.sidecar-versions: FORCE
	@mkdir -p build; echo "$(PROVISIONER_VERSION) $(SNAPSHOTTER_VERSION)" | cmp -s - $@ || echo "$(PROVISIONER_VERSION) $(SNAPSHOTTER_VERSION)" > $@
$(BIN)/csi-provisioner $(BIN)/csi-snapshotter $(BIN)/snapshot-controller: hack/csi-sidecars.sh build/.sidecar-versions
	bash hack/csi-sidecars.sh $(CURDIR)/$(BIN) $(notdir $@)
$(BIN)/csi-sanity-runner: hack/csi-sanity/go.mod hack/csi-sanity/go.sum hack/csi-sanity/main.go
	cd hack/csi-sanity && CGO_ENABLED=0 go build -trimpath -o $(CURDIR)/$@ .
# CSI stubs: generated, never committed (csi/_gen/ is ignored).
csi/_gen/csi_pb2.py: build/proto/csi.proto $(VENV)/.installed
	$(PY) -m trellis.csi.stubs build/proto/csi.proto
csi/_gen/pluginregistration_pb2.py: build/proto/pluginregistration.proto $(VENV)/.installed
	$(PY) -m trellis.csi.stubs build/proto/pluginregistration.proto
# Talos machine API stubs (trellis.operators.talosdevice.stubs): generated, never committed.
build/proto/talos/%.proto: hack/module-file.sh hack/talosvalidate/go.mod
	bash hack/module-file.sh github.com/siderolabs/talos@$(TALOS_API) api/$*/$*.proto $@
$(TALOS_STUBS): build/proto/talos/common.proto build/proto/talos/machine.proto operators/talosdevice/stubs.py $(VENV)/.installed
	$(PY) -m trellis.operators.talosdevice.stubs build/proto/talos
tools: $(BIN)/trellis-testenv $(BIN)/trellis-node $(BIN)/kubectl $(BIN)/helm $(BIN)/csi-sanity build/proto/csi.proto $(BIN)/talos-validate csi/_gen/csi_pb2.py csi/_gen/pluginregistration_pb2.py $(TALOS_STUBS) $(BIN)/csi-sanity-runner $(BIN)/csi-provisioner

crds: venv
	$(PY) -m trellis.crdgen --out crds --chart charts/trellis/crds

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy trellis hack/rossim hack/labnode hack/rack

# Container images (hack/image.sh): OCI archives and images.json in build/images/; cached by inputs.
IMAGE_DEPS := $(VENV)/.installed csi/_gen/csi_pb2.py csi/_gen/pluginregistration_pb2.py $(TALOS_STUBS) $(BIN)/csi-provisioner $(BIN)/csi-snapshotter $(BIN)/snapshot-controller
image: sysdeps $(IMAGE_DEPS)
	PY=$(PY) BIN=$(BIN) bash hack/image.sh

# The image tests (tests/integration/images) use what `make image` wrote; it is cached, so cheap.
test: venv sysdeps tools image guest
	$(PY) -m pytest $(PYTEST_ARGS)

unit: venv csi/_gen/csi_pb2.py csi/_gen/pluginregistration_pb2.py $(TALOS_STUBS)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

up: venv sysdeps tools image guest
	bash hack/up.sh

down:
	bash hack/up.sh --down

status:
	bash hack/up.sh --status

bench: venv sysdeps tools
	bash hack/bench/run-all.sh

bench-csi: venv tools
	mkdir -p build/bench && PYTHONPATH=$(CURDIR):$(CURDIR)/hack $(PY) hack/bench/csi_bench.py

# 300 hosts with emulated IPMI BMCs: time to Available, BMC requests/host/min, operator RSS.
.PHONY: bench-bmh
bench-bmh: venv sysdeps tools
	$(PY) hack/bench/bmh_bench.py

.PHONY: bench-network
bench-network: venv sysdeps tools
	$(PY) hack/bench/network_bench.py

.PHONY: bench-boot
bench-boot: venv tools
	$(PY) hack/bench/boot_bench.py

# Talos stand-in guest for QEMU VMs (kernel, initramfs, hybrid ISO; hack/guest); cached by inputs.
# `bash hack/guest/smoke.sh` boots it in QEMU through network install, disk (SeaBIOS, OVMF) and ISO.
.PHONY: guest
guest: sysdeps
	bash hack/guest/build.sh build/lab/guest

# Seconds per boot stage for 1 and 4 virtual servers booting at once through a release (build/bench/boot-e2e.json).
.PHONY: bench-boot-e2e
bench-boot-e2e: venv sysdeps tools image guest
	mkdir -p build/bench && PYTHONPATH=$(CURDIR):$(CURDIR)/hack $(PY) hack/bench/boot_e2e.py

clean:
	rm -rf build .run
