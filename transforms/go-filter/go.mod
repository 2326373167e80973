module gofilter

go 1.24
