"""Paper tables: specs in effconv/conf/experiment/<paper>/<table>.yaml, our numbers beside the paper's.

``python -m effconv.report <paper>/<table> [--static]``; see ``effconv.report.__main__``.
"""
