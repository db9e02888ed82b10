{{/* CSI helpers: (dict "root" $) in, names out. */}}
{{- define "trellis.csi.controllerName" -}}
{{- include "trellis.componentName" (dict "root" .root "component" "csi-controller") -}}
{{- end -}}
{{- define "trellis.csi.nodeName" -}}
{{- include "trellis.componentName" (dict "root" .root "component" "csi-node") -}}
{{- end -}}
{{- define "trellis.csi.secretName" -}}
{{- default (include "trellis.componentName" (dict "root" .root "component" "csi-ssh")) .root.Values.csi.rds.existingSecret -}}
{{- end -}}
{{/* The plugin's directory on the node, where kubelet finds the socket. */}}
{{- define "trellis.csi.pluginDir" -}}
{{- printf "%s/plugins/%s" .root.Values.csi.node.kubeletDir .root.Values.csi.driverName -}}
{{- end -}}
