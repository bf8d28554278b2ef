# The summary plot: GFLOP/s per layer for each pass, convgemm on both GEMM backends beside the
# classic composition ("before"), naive::, the OpenBLAS SGEMM roofline and oneDNN (plain and
# blocked layouts), at the largest batch and thread count run.
# Usage: gnuplot -e "datafile='plot.dat'; outfile='summary.png'; subtitle='...'" plot.gp
# plot.dat (written by convgemm_bench --summary-dir) holds one block per pass; NaN = not run.
if (!exists("datafile")) datafile = "plot.dat"
if (!exists("outfile")) outfile = "summary.png"
if (!exists("subtitle")) subtitle = ""

set terminal pngcairo size 1600,1500 font "sans,10" noenhanced
set output outfile
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.05:*]
set ylabel "GFLOP/s (log scale)"
set grid ytics
set xtics rotate by -30 scale 0
set key above horizontal
set bmargin 6

passes = "forward backward_data backward_weights"
set multiplot layout 3,1 title "convgemm on both GEMM backends vs the classic composition, naive, the roofline and oneDNN   ".subtitle \
    ."\nFLOPs = 2*N*O*OH*OW*(C/G)*KH*KW per pass, padding taps included"
do for [i = 0:2] {
  set title word(passes, i + 1)
  if (i > 0) { unset key }
  plot datafile index i using 2:xtic(1) title "convgemm (OpenBLAS GEMM)" lc rgb "#1f77b4", \
       '' index i using 3 title "convgemm (oneDNN GEMM)" lc rgb "#17becf", \
       '' index i using 4 title "before: classic im2col+GEMM" lc rgb "#9467bd", \
       '' index i using 5 title "naive (batch-1 rate)" lc rgb "#999999", \
       '' index i using 6 title "OpenBLAS SGEMM roofline" lc rgb "#2ca02c", \
       '' index i using 7 title "oneDNN nchw" lc rgb "#ff7f0e", \
       '' index i using 8 title "oneDNN blocked" lc rgb "#d62728"
}
unset multiplot
