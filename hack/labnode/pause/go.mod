module trellis.local/labnode/pause

go 1.25.0
