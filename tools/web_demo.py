"""A static web page that translates between modalities in the browser (onnxruntime-web, wasm).

Thin script over `mmali_tf.cli.web_demo` (also `python -m mmali_tf.cli.web_demo`); `--help` lists the flags.
"""

from mmali_tf.cli.web_demo import run

if __name__ == "__main__":
    run()
