"""The chat page's layout: its components, and which of the app's handlers each event calls.

The handlers and the state they share are ``qa.web.WebApp``'s; this module only lays them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from qa.config import MODES, UPLOADS, bounds
from qa.pipeline import threshold as effective_threshold
from qa.web_page import md_code
from qa.web_requests import MAX_K
from qa.web_uploads import MAX_UPLOAD_BYTES, UPLOAD_TYPES

if TYPE_CHECKING:
    from qa.web import WebApp

EXAMPLES = [
    "How many drones has Russia purchased from Iran since 2022?",
    "Through which sea are Iranian drones shipped to Russia?",
    "What is Iran's interbank system called?",
]
UPLOAD_CONCURRENCY = 4  # uploads read and encoded at the same time (each adds itself to the index in turn)


def page(app: WebApp) -> gr.Blocks:
    """The page and its API, wired to ``app``'s handlers."""
    engine = app.engine
    s = engine.settings
    uploads_folder = Path(s.corpus) / UPLOADS
    with gr.Blocks(title="Ask the documents", analytics_enabled=False) as demo:
        gr.Markdown("## Ask the documents\nAnswers are quoted word for word from the documents, "
                    "with numbered sources you can open.")
        questions = gr.State([])
        transcript = gr.State([])
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(
                    show_label=False,
                    height=620,
                    render_markdown=False,
                    sanitize_html=True,
                    feedback_options=None,
                    buttons=[],
                    autoscroll=False,  # the page's script keeps a new reply's first line in view
                    placeholder="**Ask a question about the documents.** Follow-up questions "
                                "(“Which port do they arrive at?”) take the conversation into account.",
                    elem_id="chat",
                )
                with gr.Row(elem_classes="qa-examples"):
                    gr.Markdown("Try:", elem_classes="qa-try")
                    examples = [gr.Button(q, size="sm", variant="secondary", elem_classes="qa-example")
                                for q in EXAMPLES]
                question = gr.Textbox(placeholder="Ask a question…", show_label=False, lines=1,
                                      submit_btn="Ask", elem_id="question", autofocus=True)
                with gr.Row():
                    new_chat = gr.Button("New conversation", size="sm", variant="secondary")
                    export_md = gr.DownloadButton("Export conversation (Markdown)", size="sm",
                                                  interactive=False, elem_id="export-md")
                    export_json = gr.DownloadButton("Export conversation (JSON)", size="sm",
                                                    interactive=False, elem_id="export-json")
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        mode = gr.Radio(list(MODES), value=s.mode, label="Retrieval mode",
                                        info="hybrid: keywords and meaning; bm25: keywords; dense: meaning")
                        k = gr.Slider(bounds("k")[0], MAX_K, value=s.k, step=1, label="Passages retrieved (k)")
                        threshold = gr.Slider(*bounds("threshold"), value=effective_threshold(engine, s), step=0.01,
                                              label="Abstention threshold",
                                              info="Below this probability of being right, the answer is "
                                                   "“not in the documents” (default: the calibrated value)")
            with gr.Tab("Documents", id="documents"):
                summary = gr.Markdown(elem_id="doc-summary")
                docs = gr.Dataframe(headers=["Title", "File", "Passages"], datatype=["str", "str", "number"],
                                    interactive=False, wrap=True, elem_id="doc-table")
                upload = gr.File(label=f"Add documents: .txt, .md, .html, .pdf or .docx, up to "
                                       f"{MAX_UPLOAD_BYTES // 2**20} MB each",
                                 file_count="multiple", file_types=UPLOAD_TYPES, type="filepath",
                                 elem_id="upload")
                gr.Markdown(f"Uploads are saved in {md_code(str(uploads_folder.resolve()))} (the corpus "
                            f"folder's `{UPLOADS}/`, which git ignores) and indexed at once. Files added, "
                            "changed or removed in the corpus folder by hand are indexed before the next "
                            "question.", elem_id="upload-where")
                status = gr.Markdown(elem_id="upload-status")
                with gr.Row():
                    to_remove = gr.Dropdown([], label="Remove an uploaded document", scale=4,
                                            elem_id="remove-choice")
                    remove = gr.Button("Remove…", variant="secondary", scale=1, elem_id="remove")
                with gr.Row(visible=False, elem_id="remove-confirm") as confirm_row:
                    confirm_text = gr.Markdown()
                    confirm = gr.Button("Yes, remove it", variant="stop", scale=0, min_width=160,
                                        elem_id="remove-yes")
                    cancel = gr.Button("Cancel", variant="secondary", scale=0, min_width=100,
                                       elem_id="remove-cancel")
                rescan = gr.Button("Re-scan the corpus folder", variant="secondary")

        chat_inputs = [question, chatbot, questions, transcript, mode, k, threshold]
        chat_outputs = [question, chatbot, questions, transcript]
        exports = [export_md, export_json]
        question.submit(app.turn, chat_inputs, [*chat_outputs, *exports], api_visibility="private")
        for button in examples:
            button.click(app.turn, [button, *chat_inputs[1:]], [*chat_outputs, *exports], api_visibility="private")
        new_chat.click(lambda: ("", [], [], [], gr.update(value=None, interactive=False),
                                gr.update(value=None, interactive=False)),
                       None, [*chat_outputs, *exports], api_visibility="private", queue=False)
        documents = [summary, docs]
        removal = [to_remove, confirm_row]
        demo.load(lambda: (*app.documents_view(), *app.removal_view()), None, [*documents, *removal],
                  api_visibility="private")
        upload.upload(app.upload_files, upload, [status, *documents, upload], api_visibility="private",
                      concurrency_limit=UPLOAD_CONCURRENCY, concurrency_id="uploads", show_progress_on=upload).then(
            app.removal_view, None, removal, api_visibility="private")
        remove.click(lambda doc: (gr.update(visible=bool(doc)),
                                  f"Remove {md_code(doc)} from the corpus folder and the index?" if doc
                                  else "Choose an uploaded document first."),
                     to_remove, [confirm_row, confirm_text], api_visibility="private", queue=False)
        cancel.click(lambda: gr.update(visible=False), None, confirm_row, api_visibility="private", queue=False)
        confirm.click(app.remove_document, to_remove, [status, *documents, *removal], api_visibility="private",
                      concurrency_limit=1, concurrency_id="corpus")
        rescan.click(app.rescan_corpus, None, [status, *documents], api_visibility="private",
                     concurrency_limit=1, concurrency_id="corpus", show_progress_on=status).then(
            app.removal_view, None, removal, api_visibility="private")
        gr.api(app.api_ask, api_name="ask")
        gr.api(app.api_documents, api_name="documents")
    return demo
